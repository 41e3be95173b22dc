"""The ``compnet`` command's entry point. It lives outside the compnet_ext package so that it
runs before torch and the extension load (about 0.3 s): Ctrl-C then ends with one line and exit
130, as it does later (:func:`compnet_ext.experiments.cli.main`), not with a traceback."""
import os
import sys


def main():
    try:
        # Imported here, inside the try, on purpose: the import is what may be interrupted.
        from compnet_ext.experiments.cli import main as cli_main
    except KeyboardInterrupt:
        rank = os.environ.get("RANK", "0").strip()
        if not (rank.isdigit() and int(rank) != 0):  # under torchrun rank 0 speaks (as cli)
            print("compnet: interrupted while starting; nothing written", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
