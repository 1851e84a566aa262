#!/usr/bin/env bash
# quickstart.sh — from a clean clone on Debian 12: install what is missing, build, then run
# the demo benchmark (demo), the test suites (test) or the tests under ASan+UBSan (sanitize).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: tools/quickstart.sh demo|test|sanitize

  demo      install missing Debian packages, build in build/, run attn-bench --check
            on the default device (8 heads, 2048 tokens, head_dim 64)
  test      the same install and build, then meson test; exits with its status
  sanitize  optional: build in build-san with AddressSanitizer and UBSan, run the tests

Extra meson options can be given in ATTN_MESON_ARGS, e.g. ATTN_MESON_ARGS='-Dvulkan=disabled'.
Installing packages needs root; when everything is installed, any user can run it.
EOF
}

# Debian 12 package names (DESIGN.md §9).
PACKAGES=(meson ninja-build pkg-config gcc python3
          ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev
          libvulkan-dev mesa-vulkan-drivers glslang-dev glslang-tools spirv-tools
          check clinfo libpng-dev)

say() { printf 'quickstart: %s\n' "$*" >&2; }

install_missing() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "dpkg-query not found: not a Debian system; install the equivalents of"
        say "  ${PACKAGES[*]}"
        say "yourself. Going on with the build."
        return 0
    fi
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
            grep -q '^install ok installed$'; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        say "these Debian packages are missing: ${missing[*]}"
        say "run this script as root, or install them first:"
        say "  sudo apt-get install --no-install-recommends ${missing[*]}"
        exit 1
    fi
    say "installing: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# configure_and_build DIR [MESON_OPTION...]: set up DIR unless it is configured (then
# reconfigure only when there are options to apply), then compile.
configure_and_build() {
    local dir=$1
    shift
    local extra=()
    if [ -n "${ATTN_MESON_ARGS:-}" ]; then
        read -r -a extra <<<"$ATTN_MESON_ARGS"
    fi
    local args=("$@" ${extra[@]+"${extra[@]}"})
    if [ -f "$dir/meson-private/coredata.dat" ]; then
        if [ "${#args[@]}" -gt 0 ]; then
            meson setup --reconfigure "$dir" "${args[@]}"
        fi
    else
        meson setup "$dir" ${args[@]+"${args[@]}"}
    fi
    meson compile -C "$dir"
}

main() {
    if [ $# -ne 1 ]; then
        usage >&2
        exit 2
    fi
    local mode=$1
    case "$mode" in
    demo | test | sanitize) ;;
    -h | --help | help)
        usage
        exit 0
        ;;
    *)
        say "unknown mode '$mode'"
        usage >&2
        exit 2
        ;;
    esac

    # The repository root is the parent of this script's folder, wherever we are called from.
    cd "$(dirname "${BASH_SOURCE[0]}")/.."

    install_missing

    case "$mode" in
    demo)
        configure_and_build build
        if [ ! -x build/tools/attn-bench ]; then
            say "build/tools/attn-bench was not built (is -Dtools=false in ATTN_MESON_ARGS?)"
            exit 1
        fi
        exec build/tools/attn-bench --check
        ;;
    test)
        configure_and_build build
        exec meson test -C build --print-errorlogs
        ;;
    sanitize)
        configure_and_build build-san -Db_sanitize=address,undefined -Db_lundef=false
        # Stop at the first report so a sanitizer finding fails its test.
        export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
        exec meson test -C build-san --print-errorlogs
        ;;
    esac
}

main "$@"
