#!/usr/bin/env bash
# fetch-data.sh: download the public NSL-KDD text files into data/nsl_kdd/ and check their
# SHA-256. For machines with internet access; scripts/demo.sh and the tests also find the data in
# $FLOWSCORE_DATA or ../shared/data/nsl_kdd. The data is never committed (data/ is gitignored).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

# The copy the project's figures were measured on: NSL_KDD.zip of GitHub repo mekkheir/Dataset,
# pinned to a commit so that the bytes cannot change (shared/data/nsl_kdd/SOURCE.md).
DEFAULT_URL="https://github.com/mekkheir/Dataset/raw/33515a0cc85db4c22ca38258c7c7ed91b7b9675f/NSL_KDD.zip"

# SHA-256 of the UNB text files (byte-identical to the files in shared/data/nsl_kdd, whose MD5
# sums are in its MD5SUMS). Other copies on the web have lines moved; they are refused.
FILES=(KDDTrain+.txt KDDTrain+_20Percent.txt KDDTest+.txt KDDTest-21.txt)
declare -A SHA256=(
    [KDDTrain+.txt]=1b86d2f957b33082081bba410fe129b475efebcc13c9014c3f447c8271aadf95
    [KDDTrain+_20Percent.txt]=7ea86479faab5ca2190b7f18b4982fb058ce5bf2b46e0e1017d0d9ef90f9c16e
    [KDDTest+.txt]=fa46b0935342616aa83b7c2578db355b6a7aaabbc492248172c7a1e8b7ab8f84
    [KDDTest-21.txt]=746993ac9e25868827cacf09eab450050a2a1056e1ce48a1ad39f5dc801d531d
)
COLUMNS_SHA256=4b700ed642818987eeedad2d6913b4e3a1907fb19df5d618edb068178adec817
COLUMNS_LINE="duration,protocol_type,service,flag,src_bytes,dst_bytes,land,wrong_fragment,urgent,hot,num_failed_logins,logged_in,num_compromised,root_shell,su_attempted,num_root,num_file_creations,num_shells,num_access_files,num_outbound_cmds,is_host_login,is_guest_login,count,srv_count,serror_rate,srv_serror_rate,rerror_rate,srv_rerror_rate,same_srv_rate,diff_srv_rate,srv_diff_host_rate,dst_host_count,dst_host_srv_count,dst_host_same_srv_rate,dst_host_diff_srv_rate,dst_host_same_src_port_rate,dst_host_srv_diff_host_rate,dst_host_serror_rate,dst_host_srv_serror_rate,dst_host_rerror_rate,dst_host_srv_rerror_rate,label,difficulty"

usage() {
    cat <<EOF
usage: scripts/fetch-data.sh [--dest DIR] [--url URL | --zip FILE] [--verify] [--force]

Download the NSL-KDD text files (KDDTrain+.txt, KDDTrain+_20Percent.txt, KDDTest+.txt,
KDDTest-21.txt) into DIR (default: data/nsl_kdd in the repository), write columns.txt, and check
every file's SHA-256. Files already present with the right checksum are kept.

  --dest DIR   where the files go (default: $ROOT/data/nsl_kdd)
  --url URL    download this zip instead of the pinned copy
               (default: $DEFAULT_URL)
  --zip FILE   use a zip you downloaded yourself (e.g. from https://www.unb.ca/cic/datasets/nsl.html)
  --verify     only check the files in DIR; download nothing
  --force      download again even when the files are present and correct
  --help       this text

Needs curl or wget, and unzip or python3. Exit status: 0 the files are present and verified,
1 a download or checksum failed, 2 usage error.

Dataset: M. Tavallaee, E. Bagheri, W. Lu, A. A. Ghorbani, "A Detailed Analysis of the KDD CUP 99
Data Set", IEEE CISDA 2009; Canadian Institute for Cybersecurity, University of New Brunswick.
Free for research use with citation; check the licence before other uses.
EOF
}

die() {
    echo "fetch-data: $*" >&2
    exit 1
}

dest="$ROOT/data/nsl_kdd"
url="$DEFAULT_URL"
zip=""
verify_only=0
force=0
while [ $# -gt 0 ]; do
    case "$1" in
    --dest) [ $# -ge 2 ] || { usage >&2; exit 2; }; dest=$2; shift 2 ;;
    --url) [ $# -ge 2 ] || { usage >&2; exit 2; }; url=$2; shift 2 ;;
    --zip) [ $# -ge 2 ] || { usage >&2; exit 2; }; zip=$2; shift 2 ;;
    --verify) verify_only=1; shift ;;
    --force) force=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "fetch-data: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

command -v sha256sum >/dev/null || die "sha256sum is missing (apt-get install coreutils)"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# verify DIR [WHAT]: 0 when every data file is in DIR with its expected SHA-256; names the bad
# ones ("FILE in WHAT", WHAT defaulting to DIR).
verify() {
    local dir=$1 what=${2:-$1} f bad=0 got
    for f in "${FILES[@]}"; do
        if [ ! -f "$dir/$f" ]; then
            echo "fetch-data: $f is not in $what" >&2
            bad=1
            continue
        fi
        got=$(sha_of "$dir/$f")
        if [ "$got" != "${SHA256[$f]}" ]; then
            echo "fetch-data: SHA-256 mismatch for $f in $what: got $got, want ${SHA256[$f]}" >&2
            bad=1
        fi
    done
    return "$bad"
}

if [ "$verify_only" = 1 ]; then
    if verify "$dest"; then
        echo "fetch-data: all ${#FILES[@]} files in $dest are verified"
        exit 0
    fi
    exit 1
fi

if [ "$force" = 0 ] && [ -z "$zip" ] && verify "$dest" 2>/dev/null; then
    echo "fetch-data: $dest already holds the verified NSL-KDD files"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-data.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$zip" ]; then
    zip="$work/NSL_KDD.zip"
    echo "fetch-data: downloading $url"
    if command -v curl >/dev/null; then
        curl -fL --progress-bar --retry 3 --connect-timeout 20 -o "$zip" "$url" ||
            die "download failed: $url (offline? use --zip FILE with a copy you downloaded)"
    elif command -v wget >/dev/null; then
        wget -q --tries=3 --timeout=20 -O "$zip" "$url" ||
            die "download failed: $url (offline? use --zip FILE with a copy you downloaded)"
    else
        die "neither curl nor wget is installed (apt-get install curl)"
    fi
fi
[ -f "$zip" ] || die "no such file: $zip"

# Extract the four text files by base name, wherever they sit inside the zip.
mkdir -p "$work/x"
if command -v unzip >/dev/null; then
    unzip -q -o -j "$zip" "${FILES[@]/#/*}" -d "$work/x" ||
        die "$zip is not a zip holding the NSL-KDD text files"
elif command -v python3 >/dev/null; then
    python3 - "$zip" "$work/x" "${FILES[@]}" <<'PY' || die "$zip is not a zip holding the NSL-KDD text files"
import os, sys, zipfile
src, out, want = sys.argv[1], sys.argv[2], set(sys.argv[3:])
with zipfile.ZipFile(src) as z:
    for info in z.infolist():
        base = os.path.basename(info.filename)
        if base in want and not info.is_dir():
            with z.open(info) as f, open(os.path.join(out, base), "wb") as g:
                g.write(f.read())
PY
else
    die "neither unzip nor python3 is installed (apt-get install unzip)"
fi

# Check every extracted file before anything lands in $dest.
verify "$work/x" "$zip" || die "refusing the download: it is not the expected NSL-KDD copy"

mkdir -p "$dest"
for f in "${FILES[@]}"; do
    mv -f "$work/x/$f" "$dest/$f.tmp"
    mv -f "$dest/$f.tmp" "$dest/$f"
done
printf '%s\n' "$COLUMNS_LINE" >"$dest/columns.txt"
[ "$(sha_of "$dest/columns.txt")" = "$COLUMNS_SHA256" ] || die "columns.txt does not match"
verify "$dest" || die "verification after the copy failed"
echo "fetch-data: NSL-KDD is in $dest (SHA-256 verified)"
