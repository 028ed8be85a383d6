"""The Dash app factory behind ``nas dashboard`` and the export button's backend."""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import dash

from ..errors import UsageError
from .callbacks import register_callbacks
from .layout import INDEX, build_layout
from ..paths import safe_filename
from ..storage import check_study_name
from .source import Snapshot, StudySource


def create_app(storage_url: str, study_name: str | None = None, refresh_seconds: float = 5.0) -> dash.Dash:
    """Build the app; raises :class:`~nas.errors.UsageError` (one line) for a wrong storage URL or study name."""
    if refresh_seconds <= 0:
        raise UsageError(f"refresh_seconds must be a positive number of seconds, got {refresh_seconds}")
    source = StudySource(storage_url)
    names = check_study_name(source.storage, storage_url, study_name)
    app = dash.Dash(__name__, title="Robust NAS dashboard", serve_locally=True, update_title=None,
                    assets_ignore=".*", include_assets_files=False)
    app.index_string = INDEX
    app.layout = build_layout(names, study_name, int(refresh_seconds * 1000))
    register_callbacks(app, source, export=_export_zip())
    return app


def _export_zip():
    """The export button's backend: ``nas.export.export_trial`` into a temporary folder, zipped in memory."""
    try:
        from ..export import export_trial
    except ImportError:
        return None

    def export(snap: Snapshot, trial: Any) -> tuple[str, bytes]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / f"{safe_filename(snap.study_name)}-trial{trial.number}"
            export_trial(snap.study, trial.number, folder, storage_url=snap.storage_url)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(folder.parent))
        return f"{folder.name}.zip", buffer.getvalue()

    return export
