#!/usr/bin/env bash
# Install the optional adversarial extra (TextAttack 0.3.11) into an existing venv beside transformers 5, and the
# NLTK data it needs into a project-local folder. Idempotent; every version is pinned. (docs/environment.md §6)
#
#   scripts/setup_textattack.sh [VENV=.venv] [NLTK_DIR=nltk_data]
#
# Why not `pip install textattack`: its dependency flair pins transformers<5, so pip backtracks to transformers 4 /
# torch 1.13 and then fails building scikit-learn. Instead:
#   1. textattack and the pure-Python/wheel deps it imports, each pinned, with --no-deps (never touches torch,
#      transformers or datasets; the script checks their versions before and after);
#   2. an import-only `flair` stub (third_party/flair_stub, dist version 0.0.0+cap.stub) built without isolation
#      from a temporary copy, so the repo stays clean;
#   3. NLTK data in NLTK_DIR (the project points NLTK_DATA there itself; nothing is downloaded at import time):
#      - corpora/stopwords/english: NLTK's 179-word list, shipped as third_party/nltk/stopwords_english.txt;
#      - corpora/wordnet: WordNet 3.0 from the Debian packages wordnet-base and wordnet-sense-index (`index.sense`:
#        nltk 3.10 reads it when the reader is built), fetched with apt-get download + dpkg-deb -x (no root needed),
#        plus `lexnames` (missing from Debian), shipped as third_party/nltk/wordnet_lexnames.txt (generated from the
#        package's lexnames(5WN) man page). `cntlist` (not `.rev`) is not copied: NLTK does not read it.
#   4. a check: wordnet.get_version() == "3.0", the stopword count, and `import textattack` through
#      cap_lightning.adversarial.environment (which blocks NLTK downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
VENV="${1:-.venv}"
NLTK_DIR="${2:-nltk_data}"
PY="$VENV/bin/python"
WORDNET_DEBS=("wordnet-base=1:3.0-37" "wordnet-sense-index=1:3.0-37")

[ -x "$PY" ] || { echo "error: no python at $PY; create the venv first (make install)" >&2; exit 1; }

core_versions() {
    "$PY" - <<'EOF'
from importlib.metadata import version, PackageNotFoundError
out = []
for name in ("torch", "transformers", "datasets", "tokenizers", "huggingface-hub", "numpy"):
    try:
        out.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        out.append(f"{name}==absent")
print(" ".join(out))
EOF
}
before="$(core_versions)"

# 1. textattack + its imported deps, pinned, no dependency resolution (scipy: imported by textattack.search_methods;
#    joblib, defusedxml: declared by nltk 3.10; cloudpickle: by joblib).
"$PY" -m pip install -q --no-deps \
    textattack==0.3.11 \
    lru-dict==1.4.1 editdistance==0.8.1 terminaltables==3.1.10 word2number==1.1 num2words==0.5.14 docopt==0.6.2 \
    lemminflect==0.2.3 language_tool_python==3.4.0 nltk==3.10.4 pinyin==0.4.0 jieba==0.42.1 OpenHowNet==2.0 \
    anytree==2.13.0 Levenshtein==0.27.5 rapidfuzz==3.14.6 bert-score==0.3.13 toml==0.10.2 psutil==7.2.2 \
    langdetect==1.0.9 six==1.17.0 more-itertools==11.2.1 scipy==1.17.1 joblib==1.6.0 defusedxml==0.7.1 \
    cloudpickle==3.1.3

# 2. the flair stub, built from a temporary copy (no build/ or egg-info left in the repo).
tmp="$(mktemp -d)"
chmod 755 "$tmp"  # apt-get download runs as _apt where it can
trap 'rm -rf "$tmp"' EXIT
cp -r third_party/flair_stub "$tmp/flair_stub"
rm -rf "$tmp/flair_stub/build" "$tmp/flair_stub"/*.egg-info
"$PY" -m pip install -q --no-deps --no-build-isolation "$tmp/flair_stub"

after="$(core_versions)"
if [ "$before" != "$after" ]; then
    echo "error: core packages changed: before [$before] after [$after]" >&2
    exit 1
fi

# 3. NLTK data.
mkdir -p "$NLTK_DIR/corpora/stopwords" "$NLTK_DIR/corpora/wordnet"
cp third_party/nltk/stopwords_english.txt "$NLTK_DIR/corpora/stopwords/english"
if [ ! -s "$NLTK_DIR/corpora/wordnet/data.noun" ] || [ ! -s "$NLTK_DIR/corpora/wordnet/index.sense" ]; then
    (
        cd "$tmp"
        apt-get download "${WORDNET_DEBS[@]}" >/dev/null
        for deb in wordnet-*.deb; do dpkg-deb -x "$deb" deb; done
    ) || {
        echo "error: could not fetch ${WORDNET_DEBS[*]} with apt-get download (needs the Debian archive;" \
            "if the package lists are empty, run apt-get update as root first)" >&2
        exit 1
    }
    find "$tmp/deb/usr/share/wordnet" -type f ! -name cntlist -exec cp {} "$NLTK_DIR/corpora/wordnet/" \;
fi
cp third_party/nltk/wordnet_lexnames.txt "$NLTK_DIR/corpora/wordnet/lexnames"

# 4. check.
NLTK_DIR_ABS="$(cd "$NLTK_DIR" && pwd)"
CAP_NLTK_DATA="$NLTK_DIR_ABS" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PY" - <<'EOF'
from cap_lightning.adversarial.environment import import_textattack, nltk_status

status = nltk_status()
missing = [name for name, ok in status.items() if not ok]
assert not missing, f"NLTK resources missing after set-up: {missing}"
from nltk.corpus import stopwords, wordnet

assert wordnet.get_version() == "3.0", wordnet.get_version()
assert len(stopwords.words("english")) == 179
assert wordnet.synsets("bank") and wordnet.morphy("dogs") == "dog"
import_textattack()
from importlib.metadata import version

print(f"textattack {version('textattack')} imports offline; flair {version('flair')}; NLTK data: {status}")
EOF
echo "adversarial extra installed into $VENV; NLTK data in $NLTK_DIR_ABS"
