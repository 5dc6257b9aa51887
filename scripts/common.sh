# Shared by scripts/demo.sh and scripts/test.sh: install what is missing, then configure.
# Usage: source scripts/common.sh; kiln_install_deps; kiln_configure BUILD_DIR [cmake args...]

KILN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KILN_JOBS=${KILN_JOBS:-$(nproc)}

# Debian packages Kiln builds against (DESIGN.md section 5).
KILN_PACKAGES=(build-essential cmake ninja-build ccache pkg-config git
  llvm-19-dev libdnnl-dev libfmt-dev catch2 zlib1g-dev libbenchmark-dev libomp-dev
  dataset-fashion-mnist)

kiln_install_deps() {
  local missing=()
  for p in "${KILN_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "kiln: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}

kiln_configure() {
  local dir=$1
  shift
  cmake -S "$KILN_ROOT" -B "$dir" -G Ninja "$@"
}
