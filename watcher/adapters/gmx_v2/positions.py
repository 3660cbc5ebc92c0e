"""Turning what the GMX reader read into the common model: one GmxPositionSim per position, legs and a Position."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

from watcher.adapters.base import Account, ReadError
from watcher.adapters.gmx_v2.accrual import MarketAccrual, position_accrual
from watcher.adapters.gmx_v2.keys import FLOAT, GmxMarket, MarketParams, apply_factor, position_key
from watcher.adapters.gmx_v2.simulator import GmxAccountSim, GmxPositionSim
from watcher.model import BPS, BlockRef, Leg, PerpLeg, Position

if TYPE_CHECKING:
    from watcher.adapters.gmx_v2.reader import GmxV2Reader


def _symbol(rd: GmxV2Reader, token: str) -> str:
    return rd.symbols.get(token.lower(), token[:8])


def build_position(
    rd: GmxV2Reader,
    acct: Account,
    rows: list[tuple[Any, ...]],
    infos: list[tuple[Any, ...]],
    prices: dict[str, int],
    params: dict[str, MarketParams],
    min_usd: int,
    block: BlockRef,
    accruals: dict[str, MarketAccrual] | None = None,
) -> Position:
    """An account's positions valued at `prices`: position rows paired with their infos by key, one sim each.

    With `accruals`, each sim also carries its borrowing and funding over time where that reproduces the read fees.
    """
    by_key = {bytes(i[0]): i for i in infos}
    if len(by_key) != len(rows):
        raise ReadError(f"{rd.protocol}/{rd.chain}: {len(rows)} positions but {len(infos)} position infos")
    sims, legs, colls = [], [], []
    for r in rows:
        (account, market, collateral), numbers, (is_long,) = r
        market, collateral = to_checksum_address(market), to_checksum_address(collateral)
        key = position_key(to_checksum_address(account), market, collateral, is_long)
        info = by_key.get(key)
        if info is None:
            raise ReadError(f"{rd.protocol}/{rd.chain}: no position info for {key.hex()}")
        if tuple(info[1][1]) != tuple(numbers):
            raise ReadError(f"{rd.protocol}/{rd.chain}: position {key.hex()} differs between the two reads")
        m = rd.markets[market]
        assert m is not None
        mp = params[market]
        fees, execution = info[2], info[3]
        referral, pro, funding, borrowing = fees[0], fees[1], fees[2], fees[3]
        size_usd, size_tokens, coll_amount, pending_impact = numbers[0], numbers[1], numbers[2], numbers[3]
        # getCachedTokenPrice: long token, then short token, then index token.
        ctoken = collateral
        pool_token = m.long if is_long else m.short
        sim = GmxPositionSim(
            is_long=is_long,
            size_usd=size_usd,
            size_tokens=size_tokens,
            collateral_amount=coll_amount,
            pending_impact_amount=pending_impact,
            index_token=m.index,
            collateral_token=ctoken,
            index_price=prices[m.index],
            collateral_price=prices[ctoken],
            price_impact_usd=execution[0],
            position_fee_factor=fees[7],
            pro_discount_factor=pro[1] if pro[0] > 0 else 0,
            referral_discount_factor=referral[6] if bytes(referral[0]) != b"\0" * 32 else 0,
            borrowing_fee_usd=borrowing[0],
            funding_fee_amount=funding[0],
            max_impact_factor_for_liquidations=mp.max_impact_factor_for_liquidations,
            min_collateral_factor=mp.min_collateral_factor_for_liquidation,
            min_collateral_usd=min_usd,
            pool_token=pool_token,
            pool_token_price=prices[pool_token],
            pool_amount=mp.pool_amount_long if is_long else mp.pool_amount_short,
            open_interest_usd=mp.open_interest_long if is_long else mp.open_interest_short,
            open_interest_tokens=mp.open_interest_tokens_long if is_long else mp.open_interest_tokens_short,
            max_pnl_factor=mp.max_pnl_factor_long if is_long else mp.max_pnl_factor_short,
        )
        if accruals is not None and market in accruals:
            acc = position_accrual(
                accruals[market],
                is_long,
                ctoken,
                size_usd,
                tuple(numbers),
                prices,
                (mp.open_interest_long, mp.open_interest_short),
                mp.open_interest_tokens_long,
                mp.pool_amount_long if is_long else mp.pool_amount_short,
            )
            t = block.timestamp
            # only a rate model that gives the Reader's own fees at the read block is projected
            if acc is not None and (acc.borrowing_fee_usd(t), acc.funding_fee_amount(t)) == (
                sim.borrowing_fee_usd,
                sim.funding_fee_amount,
            ):
                sim = replace(sim, accrual=acc)
        sims.append(sim)
        legs.append(build_leg(rd, sim, m, mp, key))
        cdec = rd.decimals[ctoken]
        colls.append(
            Leg(
                ctoken,
                _symbol(rd, ctoken),
                cdec,
                coll_amount,
                sim.collateral_price * 10**cdec,
                coll_amount * sim.collateral_price,
                BPS,
            )
        )
    acc = GmxAccountSim(tuple(sims))
    return Position(
        protocol=rd.protocol,
        chain=rd.chain,
        account=acct.address,
        label=acct.label,
        collateral=tuple(colls),
        debt=(),
        health=acc.health(),
        liquidatable=acc.liquidatable(),
        base_unit=FLOAT,
        base_currency="USD",
        block=block,
        details={"reader": rd.reader, "data_store": rd.data_store, "positions": len(sims)},
        simulator=acc,
        perps=tuple(legs),
    )


def build_leg(rd: GmxV2Reader, sim: GmxPositionSim, m: GmxMarket, mp: MarketParams, key: bytes) -> PerpLeg:
    """One position as a PerpLeg: the replayed verdict, the requirement, its liquidation price and what went in."""
    dec = rd.decimals[m.index]
    unit = 10**dec
    notional = sim.size_tokens * sim.index_price
    req = sim.requirement()
    lp = sim.liquidation_index_price()
    multiplier = mp.oi_multiplier_long if sim.is_long else mp.oi_multiplier_short
    oi_factor = apply_factor(mp.open_interest_long if sim.is_long else mp.open_interest_short, multiplier)
    fees = sim.fee_amounts()
    return PerpLeg(
        market=f"{_symbol(rd, m.index)}/USD [{_symbol(rd, m.long)}-{_symbol(rd, m.short)}]",
        size=sim.size_tokens if sim.is_long else -sim.size_tokens,
        size_decimals=dec,
        # PerpLeg prices: whole USD per whole token, from USD*1e30 per token base unit
        entry_price=Fraction(sim.size_usd * unit, sim.size_tokens * FLOAT) if sim.size_tokens else Fraction(0),
        mark_price=Fraction(sim.index_price * unit, FLOAT),
        notional=notional,
        requirement=req,
        rate=Fraction(req, notional) if notional else Fraction(sim.min_collateral_factor, FLOAT),
        margin_mode="isolated",
        tier=None,
        equity=sim.remaining(),
        liquidation_price=None if lp is None else Fraction(lp * unit, FLOAT),
        venue_liquidation_price=None,
        liquidation_tier=None,
        details={
            "position_key": "0x" + key.hex(),
            "market_token": m.market,
            "collateral_token": sim.collateral_token,
            "reason": sim.reason(),
            "pnl_usd": sim.pnl(),
            "uncapped_pnl_usd": sim.uncapped_pnl(),
            "pool_pnl_usd": sim.pool_pnl(),
            "max_pool_pnl_usd": sim.max_pool_pnl(),
            "price_impact_usd": sim.impact(),
            "pending_borrowing_fee_usd": sim.borrowing_fee_usd,
            "pending_funding_fee_amount": sim.funding_fee_amount,
            "close_fee_amounts": fees,
            "min_collateral_usd": sim.min_collateral_usd,
            "min_collateral_usd_for_leverage": sim.min_collateral_usd_for_leverage(),
            "min_collateral_factor_for_liquidation": sim.min_collateral_factor,
            "min_collateral_factor": mp.min_collateral_factor,
            "min_collateral_factor_for_open_interest": oi_factor,
            # What an increase of this position must keep (willPositionCollateralBeSufficient), not liquidation.
            "open_requirement_usd": apply_factor(sim.size_usd, max(mp.min_collateral_factor, oi_factor)),
            "pnl_capped_by_pool": sim.pnl() != sim.uncapped_pnl(),
        },
    )
