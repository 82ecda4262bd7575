"""The `hfpref` command line. Heavy imports (torch, trl, datasets) happen inside commands only."""

from __future__ import annotations

import sys

import click

from hfpref.errors import HfprefError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hfpref")
def cli() -> None:
    """Prompts to preference data to trained models, on Hugging Face datasets, the Hub and TRL."""


# --- generate / judge / run / validate / example commands (owner: core) ---

# --- end generate / judge / run / validate / example ---

# --- curate / push / export commands (owner: curate) ---

# --- end curate / push / export ---

# --- train command (owner: train) ---

# --- end train ---


def main() -> None:
    """Console entry point: hfpref errors become one line on stderr and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("hfpref: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except HfprefError as exc:
        click.echo(f"hfpref: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "hfpref: interrupted; finished requests are cached, run the same command to resume", err=True
        )
        sys.exit(130)
