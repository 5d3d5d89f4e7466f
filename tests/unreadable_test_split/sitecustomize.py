"""Python loads this module at startup in every process that has this directory on PYTHONPATH (the search's
end-to-end test puts it there): in a pipeline stage (``python stages/<name>.py``), reading the test split's file
fails, as if the file could not be read. Parquet is read through pyarrow, by pandas and datasets alike."""

import sys
from pathlib import Path

if sys.argv and Path(sys.argv[0]).parent.name == "stages":
    import pyarrow.parquet as pq

    def _refuse(path: object) -> None:
        if Path(str(getattr(path, "name", path))).name == "test.parquet":
            raise PermissionError(f"{path}: the test split is unreadable in this test")

    _read_table, _parquet_file = pq.read_table, pq.ParquetFile.__init__

    def read_table(source, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        _refuse(source)
        return _read_table(source, *args, **kwargs)

    def parquet_file(self, source, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        _refuse(source)
        _parquet_file(self, source, *args, **kwargs)

    pq.read_table, pq.ParquetFile.__init__ = read_table, parquet_file
