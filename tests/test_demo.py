"""The README's first command: `watcher demo` runs end to end on a local chain and the protocols agree with it."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_and_every_reading_agrees() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "demo", "--steps", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    agreed = re.search(r"agreed with the watcher in (\d+)/(\d+) readings", out)
    assert agreed is not None and agreed.group(1) == agreed.group(2) == "15"  # 3 steps x (4 Aave + 1 Morpho)
    assert "Every protocol on one chain: 8 deployments" in out
    assert re.search(r"that check: 1 eth_call \(\d+ reads, \d+ of them storage reads", out)
    for name in ("compound_v3", "maker", "liquity_v1", "liquity_v2", "gmx_v2", "synthetix_perps_v3"):
        assert re.search(rf"│ {name} +│ stand-in │", out), name
    assert "UNKNOWN" not in out
    # names, not raw addresses: the local chain and the tokens the demo deploys without a symbol()
    assert "anvil (31337)" in out and "local #" not in out
    assert re.search(r"│ morpho_blue +│ real +│ morpho_blue-0 .*│ WETH at ", out)
    assert "WETH/USD [WETH-USDC]" in out and re.search(r"│ liquity_v2 .*│ (WETH|wstETH) at \$", out)
    assert not re.search(r"\b0x[0-9a-fA-F]{6} at\b|0x[0-9a-fA-F]{6}/USD", out)
