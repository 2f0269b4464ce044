"""Trained weights in the study's own database, behind Optuna's artifact-store interface.

A study is one thing to move, back up and share: its weights live in a table of its own
(``cnn_study_artifacts``) beside Optuna's, on SQLite and PostgreSQL alike. The store speaks
Optuna's ``ArtifactStore`` protocol (``open_reader``, ``write``, ``remove``), so
``optuna.artifacts.upload_artifact`` / ``download_artifact``, the trial's artifact metadata and
optuna-dashboard work with it as with a folder. A folder store (``--weights-dir``) stays
available; studies of the first release kept their weights in a folder and still load from it.

Where a study's weights are is its ``artifacts`` user attribute: ``"database"`` or a folder path.
"""

import io
import json
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import optuna
import sqlalchemy
from optuna.artifacts.exceptions import ArtifactNotFound

from study.retry import patient

IN_DATABASE = "database"  # the study attribute "artifacts" of a study whose weights are in its database
TABLE = "cnn_study_artifacts"
ARTIFACT_PREFIX = "artifacts:"  # Optuna's system attribute prefix for artifact metadata


class DatabaseArtifactStore:
    """An Optuna artifact store in a table of an SQLAlchemy database (the study's own).

    Example:
        >>> store = DatabaseArtifactStore(sqlalchemy.create_engine("sqlite://"))
        >>> store.write("a1", io.BytesIO(b"weights"))
        >>> store.open_reader("a1").read()
        b'weights'
    """

    def __init__(self, engine: sqlalchemy.Engine, create: bool = True):
        """``create``: create the table when missing (writers); readers leave the database as it is."""
        self._engine = engine
        metadata = sqlalchemy.MetaData()
        self._table = sqlalchemy.Table(
            TABLE,
            metadata,
            sqlalchemy.Column("artifact_id", sqlalchemy.String(255), primary_key=True),
            sqlalchemy.Column("content", sqlalchemy.LargeBinary, nullable=False),
            sqlalchemy.Column("created", sqlalchemy.DateTime, nullable=False),
        )
        if engine.dialect.name != "sqlite":  # a database server that restarts is waited out, as the study's storage does
            for name in ("open_reader", "_insert", "remove", "size"):
                setattr(self, name, patient(getattr(type(self), name)).__get__(self))
        for attempt in range(5 if create else 0):
            try:
                metadata.create_all(engine, checkfirst=True)
                break
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as error:
                # Another process created the table this instant (PostgreSQL reports a duplicate type or table; SQLite
                # "table ... already exists", seen when two --workers started at once). Any other fault is raised.
                racing = not isinstance(error, sqlalchemy.exc.OperationalError) or "already exists" in str(error)
                if attempt == 4 or not racing:
                    raise
                time.sleep(0.2 * (attempt + 1) + random.random() / 5)

    def open_reader(self, artifact_id: str) -> BinaryIO:
        try:
            with self._engine.connect() as connection:
                content = connection.execute(
                    sqlalchemy.select(self._table.c.content).where(self._table.c.artifact_id == artifact_id)
                ).scalar_one_or_none()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError):
            content = None  # no table yet: a database that never held weights
        if content is None:
            raise ArtifactNotFound(f"artifact {artifact_id} is not in the study database")
        return io.BytesIO(content)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._insert(artifact_id, content_body.read())

    def _insert(self, artifact_id: str, content: bytes) -> None:
        # One transaction: a crash leaves the whole artifact or none of it.
        with self._engine.begin() as connection:
            connection.execute(self._table.insert().values(artifact_id=artifact_id, content=content, created=datetime.now(timezone.utc)))

    def remove(self, artifact_id: str) -> None:
        with self._engine.begin() as connection:
            deleted = connection.execute(self._table.delete().where(self._table.c.artifact_id == artifact_id)).rowcount
        if not deleted:
            raise ArtifactNotFound(f"artifact {artifact_id} is not in the study database")

    def size(self, artifact_ids: list[str]) -> int:
        """Bytes held by these artifacts."""
        if not artifact_ids:
            return 0
        length = sqlalchemy.func.length(self._table.c.content)
        with self._engine.connect() as connection:
            return int(
                connection.execute(sqlalchemy.select(sqlalchemy.func.coalesce(sqlalchemy.func.sum(length), 0))
                .where(self._table.c.artifact_id.in_(artifact_ids))).scalar_one()
            )  # fmt: skip


def storage_engine(storage: optuna.storages.BaseStorage) -> sqlalchemy.Engine:
    backend = getattr(storage, "_backend", storage)  # Optuna wraps RDBStorage in a cache
    return backend.engine


def artifact_store(study: optuna.Study, create: bool = False):
    """The artifact store that holds ``study``'s weights: its database, or the folder it names (None: neither).

    ``create``: make the table or folder when missing (for the processes that write weights).
    """
    where = study.user_attrs.get("artifacts")
    if where == IN_DATABASE:
        return DatabaseArtifactStore(storage_engine(study._storage), create=create)
    if where is None:
        return None
    if create:
        Path(where).mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(where)


def weights_size(study: optuna.Study) -> tuple[int, int]:
    """(trials with weights, bytes they take) in ``study``'s artifact store."""
    ids = [t.user_attrs["weights_artifact"] for t in study.get_trials(deepcopy=False) if t.user_attrs.get("weights_artifact")]
    store = artifact_store(study)
    if isinstance(store, DatabaseArtifactStore):
        return len(ids), store.size(ids)
    if store is None:
        return len(ids), 0
    folder = Path(study.user_attrs["artifacts"])
    return len(ids), sum((folder / i).stat().st_size for i in ids if (folder / i).is_file())


def trial_artifacts(trial: optuna.trial.FrozenTrial) -> list[str]:
    """The ids of the artifacts uploaded to ``trial`` (from Optuna's metadata, written before the content)."""
    return [json.loads(v)["artifact_id"] for k, v in trial.system_attrs.items() if k.startswith(ARTIFACT_PREFIX)]


def remove_trial_artifacts(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
    """Remove the weights of a failed trial before it is queued again: the storage does not grow with crashes.

    Returns:
        How many artifacts were removed (a crash before the upload finished leaves metadata without content).
    """
    store = artifact_store(study)
    removed = 0
    if store is None:
        return removed
    for artifact_id in trial_artifacts(trial):
        try:
            store.remove(artifact_id)
            removed += 1
        except (ArtifactNotFound, FileNotFoundError):
            pass
    return removed
