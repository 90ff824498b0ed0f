#!/usr/bin/env bash
# Installs what Lifeboat's tests, benchmarks and demo need on Debian, when
# it is missing: the real peers we test against and the tools that make
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
	[xz]=xz-utils
	[bg_printenv]=efibootguard
	[mkenvimage]=u-boot-tools
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

go mod download
