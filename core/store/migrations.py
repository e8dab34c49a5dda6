"""Schema migrations, numbered: an old store opens in a new version (each step runs once, in order)."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE tags(
            name TEXT PRIMARY KEY,
            prompt TEXT NOT NULL DEFAULT '',
            negative TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL);
        CREATE TABLE images(
            id TEXT PRIMARY KEY,
            tag TEXT NOT NULL REFERENCES tags(name),
            source TEXT NOT NULL CHECK (source IN ('synthetic', 'real', 'test')),
            path TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            model_id TEXT, model_revision TEXT, prompt TEXT, negative TEXT,
            seed INTEGER, steps INTEGER, guidance REAL, scheduler TEXT,
            series TEXT, series_index INTEGER, job_id INTEGER, original_name TEXT,
            extra TEXT NOT NULL DEFAULT '{}',
            rejected INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL,
            UNIQUE(series, series_index));
        CREATE INDEX images_by_tag ON images(tag, source, rejected);
        CREATE TABLE jobs(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            params TEXT NOT NULL,
            params_key TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            done INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '',
            error TEXT,
            result TEXT,
            owner TEXT,
            heartbeat REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL,
            started TEXT,
            finished TEXT);
        CREATE INDEX jobs_by_status ON jobs(status, id);
        CREATE TABLE slices(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            hash TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            count_per_tag INTEGER NOT NULL,
            size INTEGER,
            real_fraction REAL NOT NULL,
            repeat INTEGER NOT NULL,
            created TEXT NOT NULL);
        CREATE INDEX slices_by_name ON slices(name);
        CREATE TABLE slice_images(
            slice_id INTEGER NOT NULL REFERENCES slices(id),
            image_id TEXT NOT NULL REFERENCES images(id),
            position INTEGER NOT NULL,
            PRIMARY KEY (slice_id, image_id));
        CREATE TABLE runs(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            slice_id INTEGER REFERENCES slices(id),
            backend TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'queued',
            job_id INTEGER,
            artifact TEXT,
            metrics TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            created TEXT NOT NULL,
            started TEXT,
            finished TEXT);
        CREATE TABLE predictions(
            run_id INTEGER NOT NULL REFERENCES runs(id),
            image_id TEXT NOT NULL REFERENCES images(id),
            probabilities TEXT NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (run_id, image_id));
        """,
    ),
    (
        2,
        """
        CREATE TABLE embeddings(
            encoder TEXT NOT NULL,
            size INTEGER NOT NULL,
            image_id TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (encoder, size, image_id));
        CREATE INDEX runs_by_slice ON runs(slice_id, backend, status);
        """,
    ),
    (
        3,
        """
        CREATE TABLE azure_projects(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            endpoint TEXT NOT NULL,
            series_key TEXT NOT NULL,
            sweep TEXT NOT NULL,
            name TEXT NOT NULL,
            project_id TEXT,
            spec TEXT NOT NULL DEFAULT '{}',
            created TEXT NOT NULL,
            UNIQUE (endpoint, series_key));
        CREATE TABLE azure_tags(
            project INTEGER NOT NULL REFERENCES azure_projects(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            tag_id TEXT NOT NULL,
            PRIMARY KEY (project, tag));
        CREATE TABLE azure_images(
            project INTEGER NOT NULL REFERENCES azure_projects(id) ON DELETE CASCADE,
            image_id TEXT NOT NULL,
            azure_image_id TEXT NOT NULL,
            status TEXT NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (project, image_id));
        CREATE TABLE azure_iterations(
            project INTEGER NOT NULL REFERENCES azure_projects(id) ON DELETE CASCADE,
            slice_id INTEGER NOT NULL,
            params_key TEXT NOT NULL,
            iteration_id TEXT,
            status TEXT NOT NULL,
            published_name TEXT,
            error TEXT,
            created TEXT NOT NULL,
            PRIMARY KEY (project, slice_id, params_key));
        """,
    ),
    (
        4,
        """
        CREATE TABLE slice_filtered(
            slice_id INTEGER NOT NULL REFERENCES slices(id),
            image_id TEXT NOT NULL REFERENCES images(id),
            reason TEXT NOT NULL,
            PRIMARY KEY (slice_id, image_id));
        """,
    ),
    (
        5,
        """
        ALTER TABLE jobs ADD COLUMN started_by TEXT;
        ALTER TABLE runs ADD COLUMN started_by TEXT;
        """,
    ),
    (
        6,
        """
        CREATE TABLE IF NOT EXISTS image_signatures(
            image_id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            phash INTEGER NOT NULL,
            hashes BLOB NOT NULL,
            thumb BLOB NOT NULL,
            created TEXT NOT NULL);
        """,
    ),
]
