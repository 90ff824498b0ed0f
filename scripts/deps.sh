#!/usr/bin/env bash
# Installs what Lifeboat's tests, benchmarks and demo need on Debian, when
# it is missing: the real peers we test against (PostgreSQL included,
# which scripts/postgres.sh starts for make test) and the tools that make
# test images. Safe to run again; installs nothing that is already there.
set -euo pipefail

# command -> Debian package
declare -A need=(
	[casync]=casync
	[zstd]=zstd
	[mkfs.ext4]=e2fsprogs
	[debugfs]=e2fsprogs
	[/usr/bin/time]=time
	[curl]=curl
	[veritysetup]=cryptsetup-bin
	[cryptsetup]=cryptsetup-bin
	[qemu-system-x86_64]=qemu-system-x86
	[swtpm]=swtpm
	[swtpm_setup]=swtpm-tools
	[sfdisk]=fdisk
	[sgdisk]=gdisk
	[cpio]=cpio
	[swupdate]=swupdate
	[openssl]=openssl
	[xz]=xz-utils
	[bg_printenv]=efibootguard
	[mkenvimage]=u-boot-tools
	[mkimage]=u-boot-tools
	[fw_printenv]=libubootenv-tool
	[grub-editenv]=grub-common
	[grub-mkimage]=grub-common
	[/usr/lib/grub/x86_64-efi/moddep.lst]=grub-efi-amd64-bin
	[/usr/share/OVMF/OVMF_CODE_4M.fd]=ovmf
	[mcopy]=mtools
	[mmd]=mtools
	[bg_setenv]=efibootguard
	[mkfs.fat]=dosfstools
	[qemu-system-aarch64]=qemu-system-arm
	[/usr/lib/u-boot/qemu_arm64/u-boot.bin]=u-boot-qemu
	[pg_ctlcluster]=postgresql
	[/usr/lib/postgresql/15/bin/postgres]=postgresql
	[chromium]=chromium
	[jq]=jq
	[curl]=curl
	[psql]=postgresql-client
	[column]=bsdextrautils
)

missing=()
for cmd in "${!need[@]}"; do
	if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -e "$cmd" ]; then
		missing+=("${need[$cmd]}")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
	echo "deps: installing $pkgs"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -qq $pkgs >/dev/null 2>&1 ||
		{ $sudo apt-get update -qq && $sudo apt-get install -y -qq $pkgs >/dev/null; }
fi

# QEMU >= 10 for the arm64 U-Boot boot test (tests/boot, TestUBoot): with
# Debian 12's QEMU 7.2, U-Boot's saveenv to the virt board's pflash fails
# half-way and destroys the environment (docs/bootloader-uboot.md). QEMU
# 10 from bookworm-backports is unpacked into the cache, not installed, so
# the x86 QEMU the other tests run stays Debian 12's: APT runs with its own
# sources list, package lists and cache, and the host's /etc/apt and
# /var/lib/apt are not touched. The stock qemu-system-arm installed above
# pulls in the shared libraries it needs. qemu.FindAarch64 looks here.
cache="${LIFEBOAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat}"
bpo="$cache/qemu-arm-bpo"
if [ ! -x "$bpo/usr/bin/qemu-system-aarch64" ]; then
	echo "deps: fetching qemu-system-arm from bookworm-backports into $bpo"
	apt="$cache/apt/bookworm-backports"
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" >"$apt/sources.list"
	opts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
	apt-get "${opts[@]}" update >/dev/null
	tmp=$(mktemp -d "$cache/.qemu-arm-bpo.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get "${opts[@]}" download qemu-system-arm >/dev/null)
	dpkg-deb -x "$tmp"/qemu-system-arm_*.deb "$tmp/root"
	if ldd "$tmp/root/usr/bin/qemu-system-aarch64" | grep 'not found'; then
		echo "deps: qemu-system-aarch64 from bookworm-backports needs the libraries above" >&2
		exit 1
	fi
	"$tmp/root/usr/bin/qemu-system-aarch64" --version | head -n 1
	mv "$tmp/root" "$bpo"
fi

go mod download
