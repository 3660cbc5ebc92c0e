"""dYdX v4 adapter against a local indexer stand-in: the chain's margin math by hand, verdicts, boundaries, faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aiohttp
import pytest

from tests.dydx_server import DydxIndexerStandIn, market, num
from watcher.adapters.base import Account, ReadError
from watcher.adapters.dydx_v4 import (
    DydxV4Reader,
    adjusted_imf_ppm,
    initial_requirement,
    is_liquidatable,
    maintenance_requirement,
    notional_quantums,
    parse_market,
    validate_address,
)
from watcher.model import WAD, Position
from watcher.risk import perp_top_ups

A = "dydx1" + "qpzry9x8gf2tvdw0s3jn54khce6mua7l" + "qpzry9"  # shape of a 20-byte account address: 43 characters
B = "dydx1" + "7l" * 19
Q = 10**6  # USDC quantums
UNIT = Fraction(1, 10**8)  # the price search grid: 8 decimals (the served oracle prices have fewer)


# --- hand-worked protocol math ----------------------------------------------------------------------------------------


def test_notional_is_base_to_quote_quantums_truncated_toward_zero() -> None:
    # BTC atomicResolution -10: 123,456,789 quantums = 0.0123456789 BTC at 65,432.12345 USDC:
    #   123,456,789 * 65,432.12345 * 10**(-10 + 6) = 807,803,985.8588... -> 807,803,985 quantums (807.803985 USDC);
    #   the short side truncates toward zero: -807,803,985, not -807,803,986.
    price = Fraction("65432.12345")
    assert notional_quantums(123_456_789, -10, price) == 807_803_985
    assert notional_quantums(-123_456_789, -10, price) == -807_803_985


@pytest.mark.parametrize(
    ("oi_usdc", "expect_ppm"),
    [
        (0, 50_000),  # no OI: base IMF 5%
        (19_999_999, 50_000),  # below the lower cap (20M USDC)
        (20_000_000, 50_000),  # at the lower cap: still base (the chain tests oi <= lower)
        (26_000_000, 240_000),  # 6M/30M of the way: 50,000 + 950,000 * 1/5 = 240,000
        (30_000_000, 366_666),  # 10M/30M: 50,000 + floor(950,000 / 3) = 50,000 + 316,666 (integer floor)
        (35_000_000, 525_000),  # half way: 50,000 + 475,000
        (50_000_000, 1_000_000),  # at the upper cap: 100%
        (80_000_000, 1_000_000),  # above it: 100%
    ],
)
def test_open_interest_scaled_imf_by_hand(oi_usdc: int, expect_ppm: int) -> None:
    assert adjusted_imf_ppm(50_000, 20_000_000 * Q, 50_000_000 * Q, oi_usdc * Q) == expect_ppm


def test_open_interest_scaling_is_continuous_at_the_caps_and_full_at_the_top() -> None:
    lower, upper = 20_000_000 * Q, 50_000_000 * Q
    # one quantum above the lower cap: 950,000 * 1 / 30e12 floors to 0, so the IMF leaves the base continuously
    assert adjusted_imf_ppm(50_000, lower, upper, lower + 1) == 50_000
    # one quantum below the upper cap: 50,000 + floor(950,000 * (30e12 - 1) / 30e12) = 50,000 + 949,999 = 999,999
    assert adjusted_imf_ppm(50_000, lower, upper, upper - 1) == 999_999
    # at the top the initial requirement is the whole notional (1:1 collateral)
    assert initial_requirement(-123_456_789, adjusted_imf_ppm(50_000, lower, upper, upper)) == 123_456_789


def test_open_interest_scaling_disabled_by_a_zero_upper_cap() -> None:
    assert adjusted_imf_ppm(50_000, 0, 0, 10**20) == 50_000


def test_requirements_round_up_twice_as_the_chain_does() -> None:
    # IMR = ceil(N * imf / 1e6): 1,000.000001 USDC at 5% = 50,000,000.05 -> 50,000,001 quantums
    assert initial_requirement(1_000_000_001, 50_000) == 50_000_001
    # MMR = ceil(ceil(N * imf / 1e6) * fraction / 1e6), imf 5%, fraction 60% (MMF 3%):
    #   N = 30 quantums: ceil(1.5) = 2, ceil(2 * 0.6 = 1.2) = 2 -- the one-step ceil(30 * 3%) = ceil(0.9) would be 1
    assert maintenance_requirement(30, 50_000, 600_000) == 2
    #   N = 30,000 USDC: 1,500 USDC initial, 900 USDC maintenance exactly
    assert maintenance_requirement(30_000 * Q, 50_000, 600_000) == 900 * Q
    # a short's notional counts by its absolute value
    assert maintenance_requirement(-30_000 * Q, 50_000, 600_000) == 900 * Q


def test_liquidatable_needs_a_positive_requirement_above_net_collateral() -> None:
    assert is_liquidatable(719_999_999, 720_000_000)
    assert not is_liquidatable(720_000_000, 720_000_000)  # equal is safe
    assert not is_liquidatable(-5, 0)  # nothing required: never liquidatable, even with negative collateral


def test_maintenance_fraction_is_recovered_from_the_served_fractions() -> None:
    m = parse_market("BTC-USD", market("BTC-USD", "60000", "0.05", "0.03", -10))
    assert (m.imf_ppm, m.fraction_ppm, m.fraction_exact) == (50_000, 600_000, True)
    # 0.0333335 / 0.05 = 666,670 ppm exactly; 0.03333351 / 0.05 = 666,670.2: not a whole ppm, so the next one up
    odd = parse_market("X-USD", market("X-USD", "1", "0.05", "0.03333351", -6))
    assert (odd.fraction_ppm, odd.fraction_exact) == (666_671, False)


# --- served data ------------------------------------------------------------------------------------------------------

# Cross subaccount A/0: long 0.5 BTC (entry 62,000) and short 4 ETH (entry 2,900), 720 USDC; BTC 60,000, ETH 3,000;
# both markets imf 5%, MMF 3% (fraction 60%). By hand:
#   NC = 720 + 0.5 * 60,000 - 4 * 3,000 = 18,720 USDC; MMR = 900 (BTC) + 360 (ETH) = 1,260 USDC;
#   health = 18,720 / 1,260 = 14.857142857142857142 (WAD, floored).
# BTC moving, ETH held: NC = 720 + 0.5p - 12,000, MMR = 360 + 0.015p: liquidatable iff 0.485p < 11,640, p < 24,000.
#   At p = 24,000 exactly NC = MMR = 720: safe; at 23,999.99999999 N = floor(0.5p * 1e6) = 11,999,999,999, MMR stays
#   720,000,000 > NC 719,999,999: liquidatable. So ours is 23,999.99999999.
# ETH moving, BTC held: NC = 30,720 - 4p, MMR = 900 + 0.12p: liquidatable iff 4.12p > 29,820, p > 745,500/103
#   = 7,237.8640776699... in reals; in the chain's integers, with N = floor(4p * 1e6) and
#   MMR(N) = 900e6 + ceil(ceil(N * 0.05) * 0.6):
#   N = 28,951,456,310: ceil(1,447,572,815.5) = 1,447,572,816, * 0.6 -> 868,543,690; NC = 30,720e6 - N
#   = 1,768,543,690 = MMR: safe. N = 28,951,456,311: same MMR 1,768,543,690 > NC 1,768,543,689: liquidatable.
#   So the short is liquidatable from p = 28,951,456,311 / 4e6 = 7,237.86407775 (ceilings move it 8e-8 above reals).
# Isolated subaccount A/128: long 1,000 TRUMP (ISOLATED market, atomicResolution -6, imf 20%, MMF 10%) from 12, USDC
#   -8,500 (3,500 margin), oracle 10: NC = 1,500, MMR = 1,000, health 1.5. Liquidatable iff 900p < 8,500: the integer
#   check gives first safe N = 9,444,444,445 (N - MMR(N) = 8,500,000,000), so p < 9.444444445: ours is 9.44444444.
# OI scaling, B/0: long 100 SOL (imf 10%, MMF 5%), USDC -12,000, oracle 200, OI 150,000 SOL = 30M USDC between the
#   caps 20M and 50M: effective IMF 10% + 90% * 10/30 = 40%, IMR 8,000 = NC, so free collateral 0 (the indexer's
#   freeCollateral uses the base 10%: 6,000). Liquidatable iff 95p < 12,000, p < 126.3157...: there OI notional is
#   18.9M, below the lower cap: the IMF is back to 10%, and the MMR (always on the base IMF) did not move.
#   In integers, N = floor(1e8 p), MMR(N) = ceil(ceil(N * 0.1) * 0.5): N = 12,631,578,947 gives MMR 631,578,948 >
#   NC = N - 12,000e6 = 631,578,947 (liquidatable); N = 12,631,578,948 gives MMR 631,578,948 = NC (safe). So the
#   largest liquidatable grid price is 126.31578947.
BTC_LIQ = Fraction("23999.99999999")
ETH_LIQ = Fraction("7237.86407775")
TRUMP_LIQ = Fraction("9.44444444")
SOL_LIQ = Fraction("126.31578947")


def _markets() -> dict[str, dict[str, Any]]:
    return {
        "BTC-USD": market("BTC-USD", "60000", "0.05", "0.03", -10, "100", "20000000", "50000000"),
        "ETH-USD": market("ETH-USD", "3000", "0.05", "0.03", -9, "5000", "20000000", "50000000"),
        "TRUMP-USD": market("TRUMP-USD", "10", "0.2", "0.1", -6, "200000", "500000", "1000000", "ISOLATED"),
        "SOL-USD": market("SOL-USD", "200", "0.1", "0.05", -7, "150000", "20000000", "50000000"),
    }


def _subaccounts() -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (A, 0): {
            "usdc": "720",
            "positions": {
                "BTC-USD": {"size": "0.5", "entryPrice": "62000"},
                "ETH-USD": {"size": "-4", "entryPrice": "2900", "netFunding": "-1.25"},
            },
        },
        (A, 128): {"usdc": "-8500", "positions": {"TRUMP-USD": {"size": "1000", "entryPrice": "12"}}},
        (B, 0): {"usdc": "-12000", "positions": {"SOL-USD": {"size": "100", "entryPrice": "150"}}},
    }


ACCOUNTS = [Account(A, "alice"), Account(B, "bob")]
SUBS = {A: [0, 128], B: [0]}


def _run(
    setup: Callable[[DydxIndexerStandIn], None] | None = None, timeout: float = 5.0, subs: dict[str, list[int]] = SUBS
) -> tuple[list[Position], DydxV4Reader, DydxIndexerStandIn]:
    """Start a stand-in, let `setup` change it, and read once."""

    async def scenario() -> tuple[list[Position], DydxV4Reader, DydxIndexerStandIn]:
        async with DydxIndexerStandIn(_markets(), _subaccounts()) as server:
            if setup is not None:
                setup(server)
            reader = DydxV4Reader("dydx", server.url, ACCOUNTS, subs, timeout=timeout)
            async with aiohttp.ClientSession() as session:
                return await reader.read(session), reader, server

    return asyncio.run(scenario())


def _by_key(positions: list[Position]) -> dict[tuple[str, str], Position]:
    return {(p.account, p.details["market_id"]): p for p in positions}


def _reference() -> dict[tuple[str, str], Position]:
    positions, reader, server = _run()
    assert reader.skipped == [] and server.requests == 4  # one markets request and one per subaccount
    return _by_key(positions)


def test_cross_subaccount_with_two_markets_by_hand() -> None:
    p = _reference()[(A, "sub0")]
    assert p.protocol == "dydx_v4" and p.chain == "dydx" and p.label == "alice" and p.base_unit == Q
    assert p.key == f"dydx_v4:dydx:{A}:sub0"
    assert p.details["net_collateral"] == 18_720 * Q and p.details["maintenance_requirement"] == 1_260 * Q
    assert p.cross_equity == 18_720 * Q
    assert p.health == 14_857_142_857_142_857_142 and not p.liquidatable
    assert p.debt == () and not p.has_debt
    assert [(c.symbol, c.amount, c.value, c.weight_bps) for c in p.collateral] == [("USDC", 720 * Q, 720 * Q, 10_000)]
    btc, eth = sorted(p.perps, key=lambda leg: leg.market)
    assert (btc.size, btc.size_decimals, btc.side, btc.margin_mode) == (5 * 10**9, 10, "long", "cross")
    assert (btc.notional, btc.requirement, btc.rate, btc.tier) == (30_000 * Q, 900 * Q, Fraction(3, 100), None)
    assert btc.mark_price == 60_000 and btc.entry_price == 62_000 and btc.equity is None  # USDC per whole coin
    assert (eth.size, eth.side, eth.notional, eth.requirement) == (-4 * 10**9, "short", 12_000 * Q, 360 * Q)
    assert btc.liquidation_price == BTC_LIQ
    assert eth.liquidation_price == ETH_LIQ
    # the indexer's equity (18,720) and freeCollateral (18,720 - 0.05 * 42,000 = 16,620) agree with ours
    assert p.details["equity_agrees"] and p.details["free_collateral_agrees"] and "venue_mismatch" not in p.details
    assert p.details["free_collateral"] == 16_620 * Q and p.block.number == 1234


def test_isolated_subaccount_by_hand() -> None:
    p = _reference()[(A, "sub128")]
    (leg,) = p.perps
    assert p.details["margin_mode"] == "isolated" and leg.margin_mode == "isolated" and p.cross_equity is None
    assert leg.equity == 1_500 * Q and leg.requirement == 1_000 * Q and p.health == 3 * WAD // 2
    assert leg.liquidation_price == TRUMP_LIQ and leg.details["market_type"] == "ISOLATED"
    # perp_top_ups to health 2: ceil(2 * 1,000) - 1,500 = 500 USDC
    (top,) = perp_top_ups(p, 2 * WAD)
    assert (top.scope, top.amount, top.health_after) == ("TRUMP-USD", 500 * Q, 2 * WAD)


def _verdict(key: tuple[str, str], ticker: str, price: Fraction) -> Position:
    positions, _, _ = _run(lambda s: s.set_price(ticker, price))
    return _by_key(positions)[key]


# (NC, MMR) in quantums either side of each boundary, by hand from the integer formulas above:
#   BTC at 23,999.99999999: N = 11,999,999,999, NC = 720e6 - 12,000e6 + N = 719,999,999, MMR = 360e6 + 360e6;
#   at 24,000: N = 12e9, NC = MMR = 720,000,000 (equal is safe).
#   ETH at 7,237.86407775: N = 28,951,456,311 (see above); at 7,237.86407774: N = floor(28,951,456,310.96).
#   TRUMP at 9.44444444: N = 9,444,444,440, NC = N - 8,500e6 = 944,444,440, MMR = ceil(1,888,888,888 * 0.5)
#   = 944,444,444; at 9.44444445: N = 9,444,444,450, NC = 944,444,450, MMR = ceil(1,888,888,890 * 0.5) = 944,444,445.
@pytest.mark.parametrize(
    ("key", "ticker", "price", "nc", "mmr", "expect"),
    [
        ((A, "sub0"), "BTC-USD", BTC_LIQ, 719_999_999, 720_000_000, True),  # a long: liquidatable at ours ...
        ((A, "sub0"), "BTC-USD", BTC_LIQ + UNIT, 720_000_000, 720_000_000, False),  # ... not one unit higher
        ((A, "sub0"), "ETH-USD", ETH_LIQ, 1_768_543_689, 1_768_543_690, True),  # a short: at ours ...
        ((A, "sub0"), "ETH-USD", ETH_LIQ - UNIT, 1_768_543_690, 1_768_543_690, False),  # ... not one unit lower
        ((A, "sub128"), "TRUMP-USD", TRUMP_LIQ, 944_444_440, 944_444_444, True),
        ((A, "sub128"), "TRUMP-USD", TRUMP_LIQ + UNIT, 944_444_450, 944_444_445, False),
    ],
)
def test_liquidation_price_boundary_on_served_data(
    key: tuple[str, str], ticker: str, price: Fraction, nc: int, mmr: int, expect: bool
) -> None:
    p = _verdict(key, ticker, price)
    assert (p.details["net_collateral"], p.details["maintenance_requirement"]) == (nc, mmr)
    assert p.liquidatable is expect


def test_open_interest_scaling_boundary_between_price_and_liquidation_price() -> None:
    now = _reference()[(B, "sub0")]
    (leg,) = now.perps
    assert leg.details["imf_effective_ppm"] == 400_000 and now.details["initial_requirement"] == 8_000 * Q
    assert now.details["free_collateral"] == 0 and now.details["free_collateral_agrees"]  # indexer: base IMF
    assert leg.requirement == 1_000 * Q  # 5% of 20,000: the scaled IMF does not touch maintenance
    assert leg.liquidation_price == SOL_LIQ
    liq = SOL_LIQ
    at = _verdict((B, "sub0"), "SOL-USD", liq)
    (leg_at,) = at.perps
    assert at.liquidatable and leg_at.details["imf_effective_ppm"] == 100_000  # OI notional fell below the lower cap
    assert leg_at.liquidation_price == leg.liquidation_price  # the same boundary read from the other side of the cap
    assert not _verdict((B, "sub0"), "SOL-USD", liq + UNIT).liquidatable


def test_indexer_disagreeing_with_the_protocol_formula_is_reported_and_ours_is_used() -> None:
    positions, _, _ = _run(lambda s: setattr(s, "equity_offset", Fraction(5)))
    p = _by_key(positions)[(A, "sub0")]
    assert p.details["equity_agrees"] is False and p.details["venue_equity_usdc"] == "18725.000000"
    assert "venue_mismatch" in p.details and p.details["net_collateral"] == 18_720 * Q


def test_a_missing_subaccount_is_skipped_not_healthy() -> None:
    positions, reader, _ = _run(subs={A: [0, 5], B: [0]})
    assert {(p.account, p.details["market_id"]) for p in positions} == {(A, "sub0"), (B, "sub0")}
    assert reader.skipped == [(ACCOUNTS[0], "subaccount 5: the indexer has no such subaccount (404)")]


# --- faults -----------------------------------------------------------------------------------------------------------


def _fault(kind: str, timeout: float = 5.0) -> str:
    with pytest.raises(ReadError) as info:
        _run(lambda s: setattr(s, "fault", kind), timeout=timeout)
    return str(info.value)


def test_http_500_is_a_read_error() -> None:
    assert "HTTP 500" in _fault("http500")


def test_a_stale_indexer_is_a_read_error_not_a_healthy_reading() -> None:
    # an indexer stuck 5 minutes behind the chain (max age 120 s) serves old prices and balances: unknown
    with pytest.raises(ReadError, match=r"latest block 1234 is 3\d\d s old \(max 120 s\): its state is stale"):
        _run(lambda s: setattr(s, "lag", 300.0))
    positions, _, _ = _run(lambda s: setattr(s, "lag", 60.0))  # a minute behind is within the bound
    assert len(positions) == 3


def test_http_429_names_its_retry_after() -> None:
    assert "429" in (msg := _fault("http429")) and "Retry-After: 7" in msg


def test_malformed_json_is_a_read_error() -> None:
    assert "malformed JSON" in _fault("badjson")


@pytest.mark.parametrize("fault", ["badutf8", "deepjson"])
def test_undecodable_or_too_deep_json_is_a_read_error(fault: str) -> None:
    # used to escape as UnicodeDecodeError, and a deep nest segfaulted json.loads under eth-tester's recursion limit
    assert "malformed JSON" in _fault(fault)


def test_unknown_market_is_a_read_error() -> None:
    assert "unknown market 'BTC-USD'" in _fault("unknown_market")


def test_slow_indexer_is_a_read_error() -> None:
    assert "no whole answer within 0.2 s (timeout)" in _fault("slow", timeout=0.2)


def test_missing_field_is_a_read_error() -> None:
    assert "missing field 'oraclePrice'" in _fault("missing_field")


def test_non_positive_price_is_a_read_error() -> None:
    assert "non-positive oracle price" in _fault("zero_price")


def test_wrong_shape_is_a_read_error() -> None:
    assert "markets is not an object" in _fault("wrong_shape")


def test_float_and_too_fine_sizes_are_read_errors() -> None:
    with pytest.raises(ReadError, match="not a decimal string"):
        parse_market("BTC-USD", {**market("BTC-USD", "1", "0.05", "0.03", -10), "oraclePrice": 60000.5})
    with pytest.raises(ReadError, match="not a plain decimal"):
        parse_market("BTC-USD", market("BTC-USD", "1e999999999", "0.05", "0.03", -10))
    with pytest.raises(ReadError, match="atomicResolution"):
        parse_market("BTC-USD", market("BTC-USD", "1", "0.05", "0.03", -(10**9)))

    def finer(s: DydxIndexerStandIn) -> None:
        s.subaccounts[(A, 0)]["positions"]["BTC-USD"]["size"] = num(Fraction(1, 10**11))

    with pytest.raises(ReadError, match="finer than atomicResolution"):
        _run(finer)


# --- addresses --------------------------------------------------------------------------------------------------------


def test_validate_address_accepts_account_and_module_shapes() -> None:
    assert validate_address(A) == A
    assert validate_address(A.upper()) == A
    module = "dydx1" + "q" * 58
    assert validate_address(module) == module


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("cosmos1" + "q" * 38, "must start with 'dydx1'"),
        ("dydx1" + "q" * 37, "43"),
        ("dydx1" + "q" * 37 + "b", "outside bech32"),
        ("dydx1" + "q" * 37 + "1", "outside bech32"),
        ("Dydx1" + "q" * 38, "mixes upper and lower"),
        ("0x" + "a" * 40, "must start with 'dydx1'"),
    ],
)
def test_validate_address_rejects_bad_shapes(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        validate_address(bad)


def test_reader_refuses_bad_addresses_and_subaccount_numbers() -> None:
    with pytest.raises(ValueError, match="dydx1"):
        DydxV4Reader("dydx", "http://127.0.0.1:1", [Account("0x" + "a" * 40, "evm")])
    with pytest.raises(ValueError, match="subaccount number"):
        DydxV4Reader("dydx", "http://127.0.0.1:1", [Account(A, "a")], {A: [128_001]})
