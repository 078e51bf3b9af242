"""WordNet 3.0 for the corruption transforms (§4.2, Appendix C), read offline through nltk.

nltk's downloader needs the internet, so the database comes from the distribution instead: Debian's
`wordnet-base` and `wordnet-sense-index` put it in `/usr/share/wordnet` (`scripts/install_wordnet.sh`
installs them). nltk will not read that directory in place: it only opens files inside its data roots
and refuses symlinks out of them. So the database is copied once into `<root>/corpora/wordnet/`, with
the `lexnames` file the Debian packages leave out, and read from there.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from hf_cpt.utils.environment import cache_dir
from hf_cpt.utils.imports import missing_extra_error
from hf_cpt.utils.io import atomic_path

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

logger = logging.getLogger(__name__)

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")

#: The database files nltk's reader opens, all of which the two Debian packages install.
DATABASE_FILES = (
    "cntlist.rev",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)

#: WordNet 3.0's lexicographer files in number order (lexnames(5WN)); a synset's line in data.* names
#: its file by this number, and nltk needs the table to read any synset.
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)

# The syntactic category number lexnames gives each file's prefix.
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# Keyed by process too: a forked worker (datasets.map with num_proc) must not share the parent's open
# data files, whose shared read offsets would make concurrent seek-and-read return the wrong synsets.
_readers: dict[tuple[int, Path], WordNetCorpusReader] = {}
_lock = threading.Lock()


def wordnet_source_dir() -> Path:
    """Where the installed database is read from: `$WORDNET_DIR`, else `/usr/share/wordnet`."""
    return Path(os.environ.get("WORDNET_DIR", DEFAULT_WORDNET_DIR))


def nltk_data_root(data_root: str | Path | None = None) -> Path:
    """The nltk data root to hold the copy: `data_root`, else the first `$NLTK_DATA` entry, else the cache.

    `$NLTK_DATA` comes first when set so that the copy lands where the user's other nltk data lives;
    the cache (`$HF_CPT_CACHE/nltk_data`) needs no configuration at all.
    """
    if data_root is not None:
        return Path(data_root)
    env_roots = [entry for entry in os.environ.get("NLTK_DATA", "").split(os.pathsep) if entry]
    if env_roots:
        return Path(env_roots[0])
    return cache_dir() / "nltk_data"


def lexnames_text() -> str:
    """The `lexnames` file: number, name and syntactic category of each lexicographer file."""
    return "".join(f"{number:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for number, name in enumerate(LEXNAMES))


def install_wordnet_corpus(data_root: str | Path | None = None) -> Path:
    """Copy the installed database into `<root>/corpora/wordnet/` once, and return that directory.

    The copy is built in a temporary sibling directory and renamed into place (`atomic_path`), so a
    process that finds the directory always finds it complete, and two processes copying at once cannot
    interleave: the loser of the rename discards its copy and uses the winner's.
    """
    target = nltk_data_root(data_root).expanduser().resolve() / "corpora" / "wordnet"
    if target.is_dir():
        return target
    source = wordnet_source_dir()
    missing = [name for name in DATABASE_FILES if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"WordNet database not found in {source} (missing {', '.join(missing)}); install it with "
            "`apt-get install wordnet-base wordnet-sense-index` (scripts/install_wordnet.sh) or set WORDNET_DIR "
            "to a directory holding it."
        )
    with atomic_path(target) as staging:
        staging.mkdir()
        for name in DATABASE_FILES:
            shutil.copyfile(source / name, staging / name)
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
    logger.info("Copied the WordNet database from %s into %s (once).", source, target)
    return target


def load_wordnet(data_root: str | Path | None = None) -> WordNetCorpusReader:
    """nltk's WordNet reader over the copy in `<root>/corpora/wordnet/`, built once per root and process.

    The root is added to the end of `nltk.data.path` on every call (when absent), because nltk opens
    files only inside its data roots, also long after the reader is built; the user's own entries keep
    their order and precedence.
    """
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as error:
        raise missing_extra_error("nltk") from error
    corpus = install_wordnet_corpus(data_root)
    root = str(corpus.parent.parent)
    key = (os.getpid(), corpus)
    with _lock:
        if root not in nltk.data.path:
            nltk.data.path.append(root)
        if key not in _readers:
            with warnings.catch_warnings():
                # The multilingual Open Multilingual Wordnet is not needed; nltk warns that it is absent.
                warnings.filterwarnings("ignore", message="The multilingual functions are not available")
                _readers[key] = WordNetCorpusReader(str(corpus), None)
        return _readers[key]
