-- wrk script for POST /runs: a run of the workers' trivial flow per request.
-- No Idempotency-Key header, so the gateway gives every POST a fresh run id:
-- each request is a run of its own.
wrk.method = "POST"
wrk.body = '{"flow_name":"trivial","params":{}}'
wrk.headers["Content-Type"] = "application/json"
