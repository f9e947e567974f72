#!/usr/bin/env bash
# Writes the ELF fuzzer's seeds, fuzz/corpus/elf/, from two tiny C files.
# They are committed (under 10 KiB in all), so this runs only when they
# should change. A real plugin (hundreds of KiB) would make a slow seed;
# these hold what the readers look at — ELF and program headers, section
# headers, .dynamic with DT_NEEDED, DT_RUNPATH and DT_RPATH, .dynsym with
# defined, undefined, weak and hidden symbols — in both ELF classes, plus
# an executable (not a shared library) and an ld.so.cache.
# Needs gcc, clang (for i386 objects), GNU ld and ldconfig; run as root
# (ldconfig -r chroots).
set -euo pipefail

out=$(cd "$(dirname "$0")" && pwd)/corpus/elf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

cat >seed.c <<'C'
extern int needed_elsewhere(int);
__attribute__((weak)) extern int maybe(int);
static int helper(int x) { return x + 1; }
__attribute__((visibility("hidden"))) int hidden_fn(int x) { return helper(x); }
int exported_fn(int x) { return needed_elsewhere(x) + (maybe ? maybe(x) : 0); }
int exported_data = 3;
C
cat >dep.c <<'C'
int needed_elsewhere(int x) { return x * 2; }
void _start(void) {}
C

# Small: no relro, no page alignment, no build id, symbols stripped.
small=(-z norelro -z noseparate-code -z max-page-size=16 -s --build-id=none)
gcc -O1 -fPIC -c seed.c -o seed64.o
gcc -O1 -fPIC -c dep.c -o dep64.o
clang --target=i386-linux-gnu -O1 -fPIC -c seed.c -o seed32.o
clang --target=i386-linux-gnu -O1 -fPIC -c dep.c -o dep32.o

ld -shared "${small[@]}" -soname libseeddep.so dep64.o -o libseeddep.so
ld -m elf_i386 -shared "${small[@]}" -soname libseeddep.so dep32.o -o libseeddep32.so
ld -shared "${small[@]}" --hash-style=gnu --enable-new-dtags -rpath '$ORIGIN/../lib:/opt/seed' \
  -soname libseed.so --no-as-needed seed64.o -L. -lseeddep -o x86_64_runpath.so
ld -m elf_i386 -shared "${small[@]}" --hash-style=sysv --disable-new-dtags -rpath '$ORIGIN' \
  -soname libseed32.so --no-as-needed seed32.o libseeddep32.so -o i386_rpath.so
ld "${small[@]}" -e _start dep64.o -o x86_64_executable

mkdir -p root/lib root/etc
cp libseeddep.so x86_64_runpath.so root/lib/
echo /lib >root/etc/ld.so.conf
ldconfig -r root -C /etc/ld.so.cache -f /etc/ld.so.conf

mkdir -p "$out"
cp libseeddep.so "$out/x86_64_plain.so"
cp x86_64_runpath.so i386_rpath.so x86_64_executable "$out/"
cp root/etc/ld.so.cache "$out/ld.so.cache"
chmod 644 "$out"/*
ls -l "$out"
