# Sourced by Scripts/lab.sh and Scripts/ha-lab.sh: reads "up|down [--prefix P]" into $action
# and $prefix (default $default_prefix), checks the prefix and that we are root. The caller
# defines usage() and sets $default_prefix first; messages start with $(basename "$0").
lab_parse_args() {
  local me
  me=$(basename "$0")
  [ $# -ge 1 ] || usage
  action=$1; shift
  prefix=$default_prefix
  while [ $# -gt 0 ]; do
    case "$1" in
      --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
      --prefix=*) prefix=${1#--prefix=}; shift ;;
      -h|--help) usage ;;
      *) echo "$me: unknown argument: $1" >&2; usage ;;
    esac
  done
  # Interface names are "${prefix}" + 2 chars: keep them within IFNAMSIZ-1 = 15.
  if [ "${#prefix}" -gt 13 ]; then
    echo "$me: prefix '$prefix' too long (max 13 chars, interface names must be <= 15)" >&2
    exit 2
  fi
  case "$prefix" in
    *[!A-Za-z0-9_.-]*) echo "$me: prefix may only contain [A-Za-z0-9_.-]" >&2; exit 2 ;;
  esac
  if [ "$(id -u)" -ne 0 ]; then
    echo "$me: needs root (network namespaces)" >&2
    exit 1
  fi
}
