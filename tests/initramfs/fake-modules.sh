#!/bin/bash
# Makes a small /lib/modules/<release> tree of fake kernel modules that
# depmod and libkmod handle like real ones: relocatable ELF objects whose
# symbol tables carry exports (__ksymtab_*) and undefined references, so
# depmod computes real dependencies. They cannot be inserted (no
# .gnu.linkonce.this_module): tests only ever resolve them (dry runs).
#
#   mod_a  uses mod_b's symbol             kernel/drivers/a/mod_a.ko
#   mod_b  uses mod_c's symbol, xz         kernel/drivers/b/mod_b.ko.xz
#   mod_c  zstd                            kernel/fs/c/mod_c.ko.zst
#   mod_d  has alias husk-fake-alias       kernel/net/d/mod_d.ko
#   mod_e  gzip, uses mod_c, soft-depends  kernel/net/e/mod_e.ko.gz
#          on husk-fake-alias (mod_d)
# plus modules.builtin naming kernel/fs/builtin_f.ko, and modules.dep and
# modules.alias written by hand (so the tree is usable without depmod,
# which cannot read .ko.gz here) as depmod would write them.
#
# usage: tests/initramfs/fake-modules.sh ROOT RELEASE   (makes ROOT/lib/modules/RELEASE)
set -eu
root=$1 rel=$2
dir=$root/lib/modules/$rel
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name export-symbol used-symbol(or -) [extra modinfo]
mk() {
	local name=$1 exp=$2 use=$3 extra=${4:-}
	{
		echo "/* fake module $name */"
		echo "const char __ksymtab_strings_${name}[] __attribute__((section(\"__ksymtab_strings\"), used)) = \"$exp\";"
		echo "int $exp(void);"
		echo "int __ksymtab_$exp __attribute__((used)) = 0;"
		echo "static const char modinfo[] __attribute__((section(\".modinfo\"), used)) = \"license=GPL\\0name=$name\\0$extra\";"
		if [ "$use" != - ]; then
			echo "int $use(void);"
			echo "int $exp(void) { return $use() + 1; }"
		else
			echo "int $exp(void) { return 1; }"
		fi
	} >"$work/$name.c"
	gcc -c -O1 -fno-pic -fno-asynchronous-unwind-tables -o "$work/$name.ko" "$work/$name.c"
}
mk mod_a husk_fake_a_fn husk_fake_b_fn
mk mod_b husk_fake_b_fn husk_fake_c_fn
mk mod_c husk_fake_c_fn -
mk mod_d husk_fake_d_fn - 'alias=husk-fake-alias\0'
mk mod_e husk_fake_e_fn husk_fake_c_fn 'softdep=pre: husk-fake-alias\0'

mkdir -p "$dir/kernel/drivers/a" "$dir/kernel/drivers/b" "$dir/kernel/fs/c" \
	"$dir/kernel/net/d" "$dir/kernel/net/e"
cp "$work/mod_a.ko" "$dir/kernel/drivers/a/mod_a.ko"
xz -c "$work/mod_b.ko" >"$dir/kernel/drivers/b/mod_b.ko.xz"
zstd -q -c "$work/mod_c.ko" >"$dir/kernel/fs/c/mod_c.ko.zst"
cp "$work/mod_d.ko" "$dir/kernel/net/d/mod_d.ko"
gzip -n -c "$work/mod_e.ko" >"$dir/kernel/net/e/mod_e.ko.gz"

cat >"$dir/modules.dep" <<'DEP'
kernel/drivers/a/mod_a.ko: kernel/drivers/b/mod_b.ko.xz kernel/fs/c/mod_c.ko.zst
kernel/drivers/b/mod_b.ko.xz: kernel/fs/c/mod_c.ko.zst
kernel/fs/c/mod_c.ko.zst:
kernel/net/d/mod_d.ko:
kernel/net/e/mod_e.ko.gz: kernel/fs/c/mod_c.ko.zst
DEP
printf 'alias husk-fake-alias mod_d\n' >"$dir/modules.alias"
printf 'kernel/fs/builtin_f.ko\n' >"$dir/modules.builtin"
printf '%s\n' kernel/drivers/a/mod_a.ko kernel/drivers/b/mod_b.ko kernel/fs/c/mod_c.ko \
	kernel/net/d/mod_d.ko kernel/net/e/mod_e.ko kernel/fs/builtin_f.ko >"$dir/modules.order"
