"""``python -m study.dashboard``: optuna-dashboard with the study's weights wired in.

The plain ``optuna-dashboard URL`` shows everything but the weights kept in the study's own
database; this command starts the same dashboard (``optuna_dashboard.run_server``) with the
database artifact store, so that each trial's weights can be browsed and downloaded.
"""

import sys

from cnn.cli import ArgumentParser
from study.artifacts import DatabaseArtifactStore, storage_engine
from study.storage import DEFAULT_STORAGE, StudyError, mask_password, open_storage


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m study.dashboard",
        description="Start optuna-dashboard on a study database, with the trained weights it holds (its artifacts).",
    )
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        storage = open_storage(args.storage, must_exist=True)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from optuna_dashboard import run_server

    print(f"optuna-dashboard on http://{args.host}:{args.port} for {mask_password(args.storage)} (Ctrl-C stops it)", flush=True)
    try:
        run_server(storage, host=args.host, port=args.port, artifact_store=DatabaseArtifactStore(storage_engine(storage), create=False))
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port} ({error.strerror}); choose another --port", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
