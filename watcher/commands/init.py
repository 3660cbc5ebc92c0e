"""`watcher init`: a commented starter config for the chains and addresses given on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.config import ConfigError
from watcher.config.values import evm_address

EPILOG = """examples:
  watcher init --chain ethereum --account 0xYourAddress
  watcher init --chain ethereum --chain base --account 0xA... --account 0xB...=savings -o my.toml
  watcher init --chain arbitrum --account 0xA... --protocol aave_v3 --protocol gmx_v2 -o arb.toml
  watcher init --chain ethereum --account 0xA... -o -         # print it instead of writing a file

Chains are named as in protocols/ (ethereum, arbitrum, base ...); each gets its RPC URL from an environment
variable (ETHEREUM_RPC_URL ...), never written in the file. Without --protocol, every protocol deployed on those
chains that is found by the accounts' addresses alone is watched; those that need ids are left commented out.
An existing file is only overwritten with --force. Then: `watcher config check -c FILE`."""

#: Protocols that find positions by more than the accounts' addresses: the key to fill in, as a TOML line.
NEEDS = {
    "morpho_blue": 'discover = true                # or markets = ["0x..."]: the market ids to watch',
    "liquity_v2": "troves = []                    # your trove ids (uint256, decimal)",
    "synthetix_perps_v3": "account_ids = []               # your perps account ids",
}


def add(sub: Any, command: Any) -> None:
    """`watcher init`."""
    p = command(sub, "init", "write a starter config for your chains and addresses", EPILOG)
    p.add_argument("--chain", action="append", required=True, metavar="NAME", help="a chain to watch (repeatable)")
    p.add_argument(
        "--account",
        action="append",
        required=True,
        metavar="ADDRESS[=LABEL]",
        help="an address to watch, optionally with a label (repeatable)",
    )
    p.add_argument(
        "--protocol", action="append", metavar="NAME", help="a protocols/ file to read (repeatable; default: see below)"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: the -c file); - for stdout")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(func=cmd_init)


def known_chains() -> dict[str, int]:
    """Chain names and ids as protocols/ names them: `ethereum` from [deployments.ethereum], `arbitrum_usdc` ..."""
    from watcher.resources import protocol_files

    out: dict[str, int] = {}
    for spec in protocol_files().values():
        for entry, values in spec.get("deployments", {}).items():
            chain_id = values.get("chain_id") if isinstance(values, dict) else None
            if isinstance(chain_id, int):
                out.setdefault(entry.split("_")[0], chain_id)
    return dict(sorted(out.items()))


def _accounts(given: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for raw in given:
        address, _, label = raw.partition("=")
        try:
            checked = evm_address(address.strip())
        except ValueError as exc:
            raise ConfigError(f"--account: {exc}") from None
        if any(a == checked for a, _ in out):
            raise ConfigError(f"--account: {checked} is given twice")
        out.append((checked, label.strip()))
    return out


def _plan(chains: list[str], protocols: list[str] | None) -> tuple[list[tuple[str, list[str], bool]], list[str]]:
    """([(protocol, its chains, active)], venues) for these chains; every unknown name a ConfigError."""
    from watcher.registry import chain_protocols, venue_protocols
    from watcher.resources import protocol_files

    files = protocol_files()
    ids = known_chains()
    chain_adapters, venue_adapters = chain_protocols(), venue_protocols()
    on_chain = {
        name: sorted({ids[e.split("_")[0]] for e in spec.get("deployments", {}) if e.split("_")[0] in ids})
        for name, spec in files.items()
        if spec.get("adapter") in chain_adapters
    }
    wanted = [ids[c] for c in chains]

    def where(name: str) -> list[str]:
        return [c for c, cid in zip(chains, wanted, strict=True) if cid in on_chain[name]]

    if protocols is None:
        plan = [(n, where(n), n not in NEEDS) for n in sorted(on_chain) if where(n)]
        return plan, []
    plan, venues = [], []
    for name in dict.fromkeys(protocols):
        adapter = files.get(name, {}).get("adapter")
        if adapter in venue_adapters:
            if not venue_adapters[adapter].evm_accounts:
                raise ConfigError(
                    f"--protocol: {name} accounts are not 0x addresses: add [venues.{name}] with its accounts by hand"
                )
            venues.append(name)
            continue
        if name not in on_chain:
            known = ", ".join(sorted([*on_chain, *(n for n, f in files.items() if f.get("adapter") in venue_adapters)]))
            raise ConfigError(f"--protocol: unknown protocol {name!r} (known: {known})")
        if not where(name):
            has = ", ".join(c for c, cid in ids.items() if cid in on_chain[name])
            raise ConfigError(f"--protocol: {name} has no deployment on {', '.join(chains)} (it has: {has})")
        plan.append((name, where(name), True))
    return plan, venues


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def render(chains: list[str], accounts: list[tuple[str, str]], plan: list[Any], venues: list[str]) -> str:
    """The starter config's text."""
    ids = known_chains()
    today = datetime.now(UTC).date().isoformat()
    lines = [
        f"# Margin Watcher configuration, written by `watcher init` on {today}.",
        "# Check it with `watcher config check -c FILE`, then run `watcher check -c FILE`.",
        "# Every key is described in the README's \"Configuration reference\" and in the repository's config.toml.",
        "# Secrets (RPC URLs with API keys) are never written here: they come from the environment or a file.",
        "",
        "[thresholds]",
        "warn = 1.25      # health at or below which a position is at warn",
        "critical = 1.10  # ... and critical (required: 1 < critical < warn)",
        "target = 1.50    # the health that top-up and repayment advice restores",
        "",
    ]
    for chain in chains:
        var = f"{chain.upper()}_RPC_URL"
        lines += [
            f"[chains.{chain}]",
            f"chain_id = {ids[chain]}",
            f"rpc_urls = [{{ env = {_q(var)} }}]   # export {var}=https://... (your node or provider)",
            "",
        ]
    lines.append("# What to read: each protocol's deployment on these chains is found in protocols/ by chain id.")
    for name, on, active in plan:
        mark = "" if active else "# "
        lines += [f"{mark}[[deployments]]", f"{mark}protocol = {_q(name)}", f"{mark}chains = {json.dumps(on)}"]
        if name in NEEDS:
            lines.append(f"{mark}{NEEDS[name]}")
        lines.append("")
    for name in venues:
        lines += [f"[venues.{name}]", f"protocol = {_q(name)}   # off-chain: reads the [[accounts]] below", ""]
    lines.append("# The addresses to watch: read-only, never a key.")
    for address, label in accounts:
        lines += ["[[accounts]]", f"address = {_q(address)}"]
        lines.append(f"label = {_q(label)}" if label else '# label = "main"   # shown in tables and alerts')
        lines.append("")
    lines += [
        "[storage]",
        'path = "~/.local/share/margin-watcher/watcher.db"   # history and alert state, for `watcher run`',
        "",
        "# Alerts from `watcher run`: uncomment a channel (`watcher test-notify` tries it).",
        "# [notify.telegram]",
        '# token = { env = "TELEGRAM_BOT_TOKEN" }',
        '# chat_id = "123456789"',
        "",
    ]
    return "\n".join(lines)


def cmd_init(args: argparse.Namespace) -> int:
    """Write the starter config; exit 2 naming any unknown chain, protocol or bad address."""
    ids = known_chains()
    chains = list(dict.fromkeys(args.chain))
    for chain in chains:
        if chain not in ids:
            raise ConfigError(f"--chain: unknown chain {chain!r} (known: {', '.join(ids)})")
    accounts = _accounts(args.account)
    plan, venues = _plan(chains, args.protocol)
    text = render(chains, accounts, plan, venues)
    output = args.output or str(args.config)
    if output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(output)
    try:
        # "x": never over a file that appeared since, unless asked
        with path.open("w" if args.force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise ConfigError(f"{path}: exists; give --force to overwrite it, or -o another file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}") from None
    active = sum(1 for _, _, on in plan if on)
    print(f"wrote {path}: {len(chains)} chain(s), {active} deployment(s), {len(accounts)} account(s)")
    print("next:")
    for chain in chains:
        print(f"  export {chain.upper()}_RPC_URL=https://...")
    print(f"  watcher config check -c {path}")
    return 0
