// pyoco's dashboard: runs, a run, workers; live over SSE. Everything from
// the API goes into the page as text (textContent, attributes), never as
// HTML. The API key, when the gateway asks for one, lives in this tab's
// sessionStorage and travels in the X-API-Key header only.
'use strict';

(() => {
  const KEY = 'pyoco.api_key';
  const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);
  const RUN_ICON = {PENDING: '⏳', RUNNING: '🏃', CANCELLING: '🛑', COMPLETED: '🥕', FAILED: '💥',
                    CANCELLED: '🛑'};
  const TASK_ICON = {PENDING: '⏳', RUNNING: '🏃', SUCCEEDED: '✅', FAILED: '💥', SKIPPED: '⏭️',
                     CANCELLED: '🛑', RETRYING: '🔁'};
  const WORKER_ICON = {IDLE: '😴', RUNNING: '🏃', STALLED: '🧱', DRAINING: '🚰', STOPPED_GRACEFUL: '💤',
                       DISCONNECTED: '🔌'};

  // ---- the page's pieces ------------------------------------------------

  // el('a', {href: '#/x', class: 'y'}, 'text', child...): strings become
  // text nodes; attribute values are set as attributes (never parsed).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const c of children.flat()) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);
  const shortId = (id) => String(id).slice(0, 8);

  function when(epoch) {
    if (typeof epoch !== 'number') return '';
    const d = new Date(epoch * 1000);
    return d.toLocaleString(undefined, {month: 'short', day: 'numeric', hour: '2-digit',
                                        minute: '2-digit', second: '2-digit'});
  }

  function seconds(s) {
    if (typeof s !== 'number' || !isFinite(s) || s < 0) return '';
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 120) return `${s.toFixed(1)} s`;
    return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }

  function badge(state, icons) {
    const s = state || 'PENDING';
    return el('span', {class: `badge s-${s.toLowerCase()}`, 'data-state': s}, `${icons[s] || '•'} ${s}`);
  }

  // ---- the API ----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.detail || body.error)) || `HTTP ${status}`);
      this.status = status;
    }
  }

  function headers(extra) {
    const h = Object.assign({Accept: 'application/json'}, extra || {});
    const key = sessionStorage.getItem(KEY);
    if (key) h['X-API-Key'] = key;
    return h;
  }

  async function api(path, options) {
    const o = options || {};
    const res = await fetch(path, {method: o.method || 'GET', headers: headers(o.body ? {'Content-Type': 'application/json'} : {}),
                                   body: o.body ? JSON.stringify(o.body) : undefined, signal: o.signal});
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    // Lists answered from the gateway's memory while NATS is away say so.
    const stale = res.headers.get('X-Pyoco-Stale') ||
        (body && body.error === 'nats_unavailable' ? 'NATS is away' : '');
    $('live').classList.toggle('stale', !!stale);
    if (stale) $('live').title = stale;
    if (res.status === 401 || (res.status === 403 && !o.quiet403)) askForKey(res.status, body);
    if (!res.ok) throw new ApiError(res.status, body);
    return body;
  }

  // Server-sent events read with fetch (EventSource cannot send a header):
  // `onEvent(type, data, id)`; resumes after the last id it saw when the
  // stream ends or breaks, until `signal` aborts. Resolves to the ApiError
  // of a refusal (401, 403) that ended it, else to null.
  async function follow(path, onEvent, signal, onLive) {
    let lastId = '';
    let delay = 500;
    let ended = false;  // a run's watch saw its end
    while (!signal.aborted) {
      try {
        const h = headers({Accept: 'text/event-stream'});
        if (lastId) h['Last-Event-ID'] = lastId;
        const res = await fetch(path, {headers: h, signal});
        if (res.status === 401 || res.status === 403) {
          let body = null;
          try { body = await res.json(); } catch (_) { body = null; }
          askForKey(res.status, body);
          return new ApiError(res.status, body);
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        if (onLive) onLive(true);
        delay = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        let type = 'message', data = [], id = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += value;
          let nl;
          while ((nl = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, nl).replace(/\r$/, '');
            buffer = buffer.slice(nl + 1);
            if (line === '') {
              if (data.length) {
                if (id) lastId = id;
                let parsed = null;
                try { parsed = JSON.parse(data.join('\n')); } catch (_) { parsed = null; }
                if (parsed !== null) {
                  if (parsed.kind === 'run_end' && path.endsWith('/watch')) ended = true;
                  onEvent(type, parsed, id);
                }
              }
              type = 'message'; data = []; id = '';
            } else if (line.startsWith('data:')) {
              data.push(line.slice(5).replace(/^ /, ''));
            } else if (line.startsWith('event:')) {
              type = line.slice(6).trim();
            } else if (line.startsWith('id:')) {
              id = line.slice(3).trim();
            }
          }
        }
        // The server ended it: after a run's end that is all; otherwise
        // (NATS away, a gateway restarting) it is taken up again below.
        if (onLive) onLive(false);
        if (ended) return null;
      } catch (e) {
        if (signal.aborted) return null;
        if (onLive) onLive(false);
        // Broken right after the run's end: nothing is left to follow.
        if (ended) return null;
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
    return null;
  }

  // ---- the key ------------------------------------------------------------

  let keyAsked = false;
  function askForKey(status, body) {
    const dialog = $('key-dialog');
    $('key-error').textContent = status === 403 && sessionStorage.getItem(KEY)
      ? `This key was refused (${(body && body.detail) || 'forbidden'}).`
      : '';
    if (!dialog.open) dialog.showModal();
    keyAsked = true;
  }

  function setUpKey() {
    $('key-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const key = $('key-input').value.trim();
      if (key) sessionStorage.setItem(KEY, key);
      else sessionStorage.removeItem(KEY);
      $('key-input').value = '';
      $('key-dialog').close();
      keyAsked = false;
      startHeader();
      render();
    });
    $('key-button').addEventListener('click', () => askForKey(0, null));
  }

  // ---- the header: runs by status, kept current by /events ---------------

  let headerStream = null;
  let statsTimer = 0;
  const listeners = new Set();  // views that want each run-level event

  async function refreshStats() {
    try {
      const s = await api('/stats');
      const parts = [];
      for (const status of ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED']) {
        parts.push(el('a', {class: `count s-${status.toLowerCase()}`, href: `#/runs?status=${status}`,
                            title: status, 'data-status': status},
                      `${RUN_ICON[status]} ${s.runs[status] || 0}`));
      }
      parts.push(el('span', {class: 'count progress', 'data-status': 'in_progress'},
                    `in progress ${s.in_progress}`));
      $('counts').replaceChildren(...parts);
    } catch (_) { /* the key dialog or the live dot says it */ }
  }

  function startHeader() {
    if (headerStream) headerStream.abort();
    headerStream = new AbortController();
    refreshStats();
    follow('/events', (type, data) => {
      // The gateway's index follows the same events: asked again a moment
      // later so that a count it had not applied yet shows.
      clearTimeout(statsTimer);
      statsTimer = setTimeout(() => { refreshStats(); statsTimer = setTimeout(refreshStats, 1200); }, 200);
      for (const l of listeners) l(data);
    }, headerStream.signal, (live) => {
      $('live').classList.toggle('off', !live);
      $('live').title = live ? 'live updates' : 'reconnecting…';
    });
  }

  // ---- views --------------------------------------------------------------

  let viewAbort = null;

  function route() {
    const hash = location.hash || '#/runs';
    const [path, query] = hash.slice(1).split('?');
    const params = new URLSearchParams(query || '');
    const parts = path.split('/').filter(Boolean);
    if (parts[0] === 'runs' && parts[1]) return {view: 'run', id: decodeURIComponent(parts[1])};
    if (parts[0] === 'workers') return {view: 'workers'};
    return {view: 'runs', params};
  }

  function render() {
    if (viewAbort) viewAbort.abort();
    for (const l of [...listeners]) listeners.delete(l);
    viewAbort = new AbortController();
    const r = route();
    $('nav-runs').classList.toggle('here', r.view !== 'workers');
    $('nav-workers').classList.toggle('here', r.view === 'workers');
    const view = $('view');
    view.replaceChildren();
    if (r.view === 'run') runView(view, r.id, viewAbort.signal);
    else if (r.view === 'workers') workersView(view, viewAbort.signal);
    else runsView(view, r.params, viewAbort.signal);
  }

  // A refused key (401, 403) is not a missing page: the key dialog is up,
  // and the view says why there is nothing to show.
  function problem(view, e) {
    const text = e.status === 401 ? 'This needs an API key: enter one (🔑 key) to see it.'
               : e.status === 403 ? `Your API key was refused: ${e.message} (🔑 key changes it).`
               : e.status === 404 ? 'Not found.' : `Could not load: ${e.message}`;
    view.append(el('p', {class: 'error', role: 'alert', id: 'view-problem'}, text));
  }

  // Runs: filters, a page, live rows.
  function runsView(view, params, signal) {
    const status = params.get('status') || '';
    const flow = params.get('flow') || '';
    const tag = params.get('tag') || '';
    const cursor = params.get('cursor') || '';
    const select = el('select', {name: 'status', id: 'f-status'},
                      el('option', {value: ''}, 'any status'),
                      ...['PENDING', 'RUNNING', 'CANCELLING', 'COMPLETED', 'FAILED', 'CANCELLED']
                        .map((s) => el('option', {value: s, selected: s === status}, `${RUN_ICON[s]} ${s}`)));
    const flowInput = el('input', {name: 'flow', id: 'f-flow', placeholder: 'flow', value: flow});
    const tagInput = el('input', {name: 'tag', id: 'f-tag', placeholder: 'tag', value: tag});
    const apply = () => {
      const q = new URLSearchParams();
      if (select.value) q.set('status', select.value);
      if (flowInput.value.trim()) q.set('flow', flowInput.value.trim());
      if (tagInput.value.trim()) q.set('tag', tagInput.value.trim());
      location.hash = `#/runs${q.toString() ? '?' + q : ''}`;
    };
    select.addEventListener('change', apply);
    const filters = el('div', {class: 'filters'}, select, flowInput, tagInput,
                       el('button', {type: 'button', onclick: apply}, 'Filter'));
    for (const input of [flowInput, tagInput]) {
      input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') apply(); });
    }
    const body = el('tbody', {id: 'runs-body'});
    const table = el('div', {class: 'scroll'}, el('table', {class: 'runs'},
      el('thead', {}, el('tr', {}, ['status', 'flow', 'run', 'tag', 'submitted', 'took'].map((h) => el('th', {}, h)))),
      body));
    const more = el('div', {class: 'paging'});
    view.append(el('h1', {}, '🐇 Runs'), filters, table, more);

    const rows = new Map();
    const matches = (r) => (!status || r.status === status) && (!flow || r.flow_name === flow) &&
                           (!tag || r.tag === tag);
    function row(r) {
      const took = typeof r.end_time === 'number' && typeof r.start_time === 'number'
        ? seconds(r.end_time - r.start_time) : '';
      return el('tr', {'data-run': r.run_id, 'data-status': r.status},
                el('td', {}, badge(r.status, RUN_ICON)),
                el('td', {class: 'flow'}, r.flow_name || ''),
                el('td', {}, el('a', {href: `#/runs/${encodeURIComponent(r.run_id)}`, class: 'mono'}, shortId(r.run_id))),
                el('td', {}, r.tag || ''),
                el('td', {}, when(r.submitted_at)),
                el('td', {}, took));
    }
    function put(r, atTop) {
      const tr = row(r);
      const old = rows.get(r.run_id);
      if (old) old.replaceWith(tr);
      else if (atTop) body.prepend(tr);
      else body.append(tr);
      rows.set(r.run_id, tr);
    }

    const q = new URLSearchParams({limit: '50', cursor: cursor || ''});
    if (!cursor) q.delete('cursor');
    if (status) q.set('status', status);
    if (flow) q.set('flow', flow);
    if (tag) q.set('tag', tag);
    q.set('updated_after', '0');  // asks for the paged shape
    api(`/runs?${q}`, {signal}).then((page) => {
      const items = Array.isArray(page) ? page : page.items;
      for (const r of items) put(r, false);
      if (!items.length) body.append(el('tr', {class: 'empty'}, el('td', {colspan: 6}, 'No runs yet.')));
      const next = Array.isArray(page) ? null : page.next_cursor;
      if (cursor) more.append(el('a', {href: '#/runs' + (status || flow || tag ? '?' + new URLSearchParams(Object.entries({status, flow, tag}).filter(([, v]) => v)) : '')}, '⟵ newest'));
      if (next) {
        const n = new URLSearchParams(Object.entries({status, flow, tag}).filter(([, v]) => v));
        n.set('cursor', next);
        more.append(el('a', {href: `#/runs?${n}`, id: 'older'}, 'older ⟶'));
      }
    }).catch((e) => { if (!signal.aborted) problem(view, e); });

    // Live: a run-level event says which run changed; its record says how.
    if (cursor) return;  // an older page stays as it was
    listeners.add((event) => {
      const id = event.run_id;
      if (!id) return;
      api(`/runs/${encodeURIComponent(id)}`, {signal, quiet403: true}).then((r) => {
        const empty = body.querySelector('tr.empty');
        if (matches(r)) {
          if (empty) empty.remove();
          put(r, !rows.has(r.run_id));
        } else if (rows.has(r.run_id)) {
          rows.get(r.run_id).remove();
          rows.delete(r.run_id);
        }
      }).catch(() => {});
    });
  }

  // A run: its graph, its tasks, its log, live until it ends.
  function runView(view, id, signal) {
    const title = el('h1', {}, '🐇 Run ', el('span', {class: 'mono'}, shortId(id)));
    const summary = el('dl', {class: 'summary'});
    const actions = el('div', {class: 'actions'});
    const graph = el('div', {class: 'graph scroll', id: 'graph'});
    const tasksBody = el('tbody', {id: 'tasks-body'});
    const tasks = el('div', {class: 'scroll'}, el('table', {class: 'tasks'},
      el('thead', {}, el('tr', {}, ['task', 'state', 'attempts', 'took', 'output'].map((h) => el('th', {}, h)))),
      tasksBody));
    const artifacts = el('ul', {class: 'artifacts', id: 'artifacts'});
    const log = el('ol', {class: 'log', id: 'log'});
    view.append(title, summary, actions,
                el('h2', {}, 'Graph'), graph,
                el('h2', {}, 'Tasks'), tasks,
                el('h2', {}, 'Artifacts'), artifacts,
                el('h2', {}, 'Log'), log);

    const nodes = new Map();  // node -> {task, after, state, attempt, took, output}
    let record = null;
    let graphTimer = 0;

    function node(name) {
      if (!nodes.has(name)) nodes.set(name, {task: '', after: [], state: 'PENDING', attempt: 0, took: null, output: ''});
      return nodes.get(name);
    }

    function showSummary() {
      if (!record) return;
      const r = record;
      const took = typeof r.end_time === 'number' && typeof r.start_time === 'number' ? seconds(r.end_time - r.start_time) : '';
      const pairs = [['status', badge(r.status, RUN_ICON)], ['flow', r.flow_name || ''], ['run id', el('span', {class: 'mono'}, r.run_id)],
                     ['tag', r.tag || ''], ['attempt', String(r.attempt ?? '')], ['submitted', when(r.submitted_at)],
                     ['took', took], ['worker', (r.owner && r.owner.worker_id) || ''],
                     ['plugins', Object.entries(r.plugins || {}).map(([n, v]) => `${n} ${v}`).join(', ')]];
      if (r.error) pairs.push(['error', el('span', {class: 'error'}, typeof r.error === 'string' ? r.error : JSON.stringify(r.error))]);
      summary.replaceChildren(...pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
      summary.setAttribute('data-status', r.status);
      actions.replaceChildren();
      if (!TERMINAL.has(r.status)) {
        const note = el('span', {class: 'muted', id: 'cancel-note'});
        const button = el('button', {type: 'button', id: 'cancel', class: 'danger', onclick: async () => {
          button.disabled = true;
          try {
            await api(`/runs/${encodeURIComponent(id)}/cancel`, {method: 'POST', quiet403: true});
            note.textContent = 'cancel asked…';
          } catch (e) {
            button.disabled = false;
            note.textContent = e.status === 403 ? 'your key may not cancel runs (it needs runs:write)' : `cancel failed: ${e.message}`;
          }
        }}, '🛑 Cancel');
        actions.append(button, note);
      }
    }

    // A run of 100,000 iterations must not freeze the page: the table shows
    // MAX_ROWS tasks (beyond that, those that did not succeed first) and
    // counts the rest; the graph is drawn up to MAX_DRAWN nodes; both are
    // redrawn at most every 150 ms, not at every event.
    const MAX_ROWS = 500, MAX_DRAWN = 300;
    let showTimer = 0;
    function showSoon() {
      if (!showTimer) showTimer = setTimeout(() => { showTimer = 0; showTasks(); }, 150);
    }

    function showTasks() {
      let shown = [...nodes];
      if (shown.length > MAX_ROWS) {
        const settled = (n) => n.state === 'SUCCEEDED' || n.state === 'PENDING';
        shown = [...shown.filter(([, n]) => !settled(n)), ...shown.filter(([, n]) => settled(n))].slice(0, MAX_ROWS);
      }
      const rows = shown.map(([name, n]) =>
        el('tr', {'data-node': name, 'data-state': n.state},
           el('td', {}, el('span', {class: 'mono'}, name), el('div', {class: 'muted small'}, n.task)),
           el('td', {}, badge(n.state, TASK_ICON)),
           el('td', {}, n.attempt ? String(n.attempt) : ''),
           el('td', {}, n.took === null ? '' : seconds(n.took / 1000)),
           el('td', {class: 'output'}, n.output)));
      if (nodes.size > shown.length) {
        const counts = new Map();
        for (const n of nodes.values()) counts.set(n.state, (counts.get(n.state) || 0) + 1);
        const by = [...counts].map(([state, k]) => `${TASK_ICON[state] || ''} ${k} ${state.toLowerCase()}`).join(', ');
        rows.push(el('tr', {id: 'tasks-more'}, el('td', {colspan: 5, class: 'muted'},
          `… and ${nodes.size - shown.length} more tasks not shown (of ${nodes.size}: ${by})`)));
      }
      tasksBody.replaceChildren(...rows);
      clearTimeout(graphTimer);
      graphTimer = setTimeout(drawGraph, 50);
    }

    // Columns by depth (longest path from a node with no predecessor),
    // rows in the order the run planned them.
    function drawGraph() {
      const names = [...nodes.keys()];
      if (!names.length) { graph.replaceChildren(el('p', {class: 'muted'}, 'No tasks yet.')); return; }
      if (names.length > MAX_DRAWN) {
        graph.replaceChildren(el('p', {class: 'muted', id: 'graph-too-big'},
          `${names.length} nodes: too many to draw here. `, el('code', {}, 'pyoco graph FLOW'),
          ' draws the flow\'s graph.'));
        return;
      }
      const depth = new Map();
      const depthOf = (name, seen) => {
        if (depth.has(name)) return depth.get(name);
        if (seen.has(name)) return 0;
        seen.add(name);
        const preds = (nodes.get(name)?.after || []).filter((p) => nodes.has(p));
        const d = preds.length ? 1 + Math.max(...preds.map((p) => depthOf(p, seen))) : 0;
        depth.set(name, d);
        return d;
      };
      const columns = [];
      for (const name of names) {
        const d = depthOf(name, new Set());
        (columns[d] ||= []).push(name);
      }
      const W = 170, H = 44, GX = 60, GY = 18, PAD = 10;
      const pos = new Map();
      columns.forEach((col, c) => col.forEach((name, r) => pos.set(name, {x: PAD + c * (W + GX), y: PAD + r * (H + GY)})));
      const width = PAD * 2 + columns.length * W + (columns.length - 1) * GX;
      const height = PAD * 2 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
      const drawing = svg('svg', {viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'the run\'s graph'});
      drawing.append(svg('defs', {}, svg('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
                                         svg('path', {d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead'}))));
      for (const [name, n] of nodes) {
        for (const p of n.after) {
          if (!pos.has(p)) continue;
          const a = pos.get(p), b = pos.get(name);
          const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
          drawing.append(svg('path', {d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2 - 2} ${y2}`, class: 'edge', 'marker-end': 'url(#arrow)'}));
        }
      }
      for (const [name, n] of nodes) {
        const p = pos.get(name);
        const label = name.length > 16 ? name.slice(0, 15) + '…' : name;
        drawing.append(svg('g', {class: `node s-${n.state.toLowerCase()}`, transform: `translate(${p.x} ${p.y})`, 'data-node': name},
                           svg('title', {}, `${name} (${n.task}): ${n.state}`),
                           svg('rect', {width: W, height: H, rx: 10}),
                           svg('text', {x: 12, y: H / 2 + 5}, `${TASK_ICON[n.state] || '•'} ${label}`)));
      }
      graph.replaceChildren(drawing);
    }

    function addLog(e, seq) {
      const when = typeof e.ts === 'string' ? e.ts.slice(11, 23) : '';
      log.append(el('li', {class: `lvl-${String(e.level || 'INFO').toLowerCase()}`, 'data-seq': seq},
                    el('span', {class: 'muted mono'}, when), ' ',
                    el('span', {class: 'mono node'}, e.node || ''), ' ',
                    el('span', {class: 'message'}, e.message ?? '')));
      if (log.childElementCount > 2000) log.firstElementChild.remove();
      if (log.dataset.follow !== 'no') log.scrollTop = log.scrollHeight;  // the list, not the page
    }

    function addArtifacts(e) {
      for (const a of e.artifacts || []) {
        artifacts.append(el('li', {}, el('span', {class: 'mono'}, a.name), ` — ${a.size ?? '?'} bytes`,
                            a.media_type ? `, ${a.media_type}` : '', a.sha256 ? el('span', {class: 'muted mono small'}, ` sha256 ${String(a.sha256).slice(0, 12)}…`) : ''));
      }
    }

    function onEvent(type, e, seq) {
      if (type === 'snapshot') {
        record = e;
        for (const [name, state] of Object.entries(e.tasks || {})) node(name).state = state;
        showSummary();
        showTasks();
        return;
      }
      switch (e.kind) {
        case 'nodes_planned':
          for (const p of e.planned || []) {
            const n = node(p.node);
            n.task = p.task || n.task;
            n.after = Array.isArray(p.after) ? p.after : [];
          }
          break;
        case 'log':
          addLog(e, seq);
          return;
        case 'run_start':
        case 'run_cancelling':
        case 'run_end':
        case 'run_submitted':
          api(`/runs/${encodeURIComponent(id)}`, {signal}).then((r) => { record = r; showSummary(); }).catch(() => {});
          if (e.kind === 'run_start') {
            // A new attempt starts over: what an earlier one did is gone.
            for (const n of nodes.values()) { n.state = 'PENDING'; n.attempt = 0; n.took = null; n.output = ''; }
            artifacts.replaceChildren();
          }
          break;
        default:
          if (e.node) {
            const n = node(e.node);
            if (e.task) n.task = e.task;
            if (e.task_state) n.state = e.task_state;
            if (e.attempt) n.attempt = e.attempt;
            if (typeof e.duration_ms === 'number' && e.kind !== 'node_start') n.took = e.duration_ms;
            if (typeof e.output === 'string') n.output = e.output;
            if (e.kind === 'node_done') addArtifacts(e);
          }
      }
      showSoon();
    }

    log.addEventListener('scroll', () => {
      log.dataset.follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4 ? 'yes' : 'no';
    });
    follow(`/runs/${encodeURIComponent(id)}/watch`, onEvent, signal).then((refused) => {
      if (!signal.aborted && !record) problem(view, refused || new ApiError(404, null));
    });
  }

  // Workers: their state, tags, slots, runs and plugins; hide and show.
  function workersView(view, signal) {
    const showHidden = el('input', {type: 'checkbox', id: 'show-hidden'});
    const body = el('tbody', {id: 'workers-body'});
    view.append(el('h1', {}, '🏃 Workers'),
                el('div', {class: 'filters'}, el('label', {}, showHidden, ' show hidden'),
                   el('button', {type: 'button', id: 'refresh-workers', onclick: () => load()}, '↻ Refresh')),
                el('div', {class: 'scroll'}, el('table', {class: 'workers'},
                  el('thead', {}, el('tr', {}, ['state', 'worker', 'tags', 'slots', 'running', 'plugins', ''].map((h) => el('th', {}, h)))),
                  body)));
    const note = el('p', {class: 'muted', id: 'workers-note'});
    view.append(note);

    async function setHidden(id, hidden) {
      try {
        await api(`/workers/${encodeURIComponent(id)}`, {method: 'PATCH', body: {hidden}, quiet403: true});
        note.textContent = '';
        load();
      } catch (e) {
        note.textContent = e.status === 403 ? 'your key may not hide workers (it needs admin)' : `could not change it: ${e.message}`;
      }
    }

    async function load() {
      try {
        const list = await api(`/workers?include_hidden=${showHidden.checked}`, {signal});
        const rows = list.map((w) => {
          const running = Array.isArray(w.running) ? w.running : [];
          return el('tr', {'data-worker': w.worker_id, 'data-state': w.state, class: w.hidden ? 'hidden-worker' : ''},
            el('td', {}, badge(w.state, WORKER_ICON),
              w.held_threads > 0 ? el('div', {class: 'small error held-threads'},
                `${w.held_threads} of ${w.jobs ?? '?'} threads held by tasks that ignored their cancel`) : ''),
            el('td', {class: 'mono'}, w.worker_id, w.hidden ? el('span', {class: 'muted small'}, ' (hidden)') : ''),
            el('td', {}, (w.tags || []).join(', ')),
            el('td', {}, `${running.length} / ${w.slots ?? '?'}`),
            el('td', {}, running.map((id) => el('a', {href: `#/runs/${encodeURIComponent(id)}`, class: 'mono run-link'}, shortId(id)))),
            el('td', {class: 'small'}, (w.plugins || []).map((p) => el('div', {class: p.state === 'failed' ? 'error' : ''},
              `${p.name} ${p.version}${p.state === 'failed' ? ' (refused)' : ''}`))),
            el('td', {}, el('button', {type: 'button', class: 'quiet hide-toggle', 'data-worker': w.worker_id,
                                       onclick: () => setHidden(w.worker_id, !w.hidden)}, w.hidden ? '👁 show' : '🙈 hide')));
        });
        if (!rows.length) rows.push(el('tr', {}, el('td', {colspan: 7}, 'No workers.')));
        body.replaceChildren(...rows);
      } catch (e) {
        if (!signal.aborted) note.textContent = `Could not load: ${e.message}`;
      }
    }
    showHidden.addEventListener('change', load);
    load();
    // A run starting or ending changes a worker's state and runs; a worker
    // coming, going or falling silent says nothing on the event stream, so
    // the list is also read again every 5 s while it is shown.
    let timer = 0;
    listeners.add(() => { clearTimeout(timer); timer = setTimeout(load, 300); });
    const every = setInterval(load, 5000);
    signal.addEventListener('abort', () => { clearInterval(every); clearTimeout(timer); });
  }

  // ---- start --------------------------------------------------------------

  window.addEventListener('hashchange', render);
  document.addEventListener('DOMContentLoaded', () => {
    setUpKey();
    startHeader();
    render();
  });
})();
