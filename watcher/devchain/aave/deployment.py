"""deploy_aave: a whole Aave v3.0 or v3.6 market (provider, pool, reserves, eMode) in two batched stages."""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address
from web3 import Web3

from watcher.devchain.aave.artifacts import _POOL_LIBS, aave_artifacts
from watcher.devchain.aave.market import AaveMarket
from watcher.devchain.aave.plan import _errors_abi, _Plan
from watcher.devchain.aave.specs import (
    BASE_CURRENCY_UNIT,
    EMODE_STABLECOINS,
    GAS_ERC20,
    GAS_INIT_RESERVE,
    MAX_UINT,
    RATE_BPS,
    RAY,
    RESERVE_FACTOR_BPS,
    RESERVES,
    ZERO,
    EModeSpec,
    ReserveSpec,
)
from watcher.devchain.deploy import Calldata


def deploy_aave(
    w3: Web3,
    version: str,
    admin: str | None = None,
    *,
    reserves: Sequence[ReserveSpec] = RESERVES,
    emode: EModeSpec | None = EMODE_STABLECOINS,
) -> AaveMarket:
    """Deploy a real Aave market of version "3.0" or "3.6" with mock tokens and feeds; admin is every admin."""
    arts = aave_artifacts(version)
    admin = to_checksum_address(admin or w3.eth.accounts[0])
    plan = _Plan(w3, admin, _errors_abi(arts))
    cd = {role: Calldata(art.abi) for role, art in arts.items()}

    # Stage 1: everything whose addresses are known from the admin's nonces alone.
    provider = plan.deploy(arts["provider"], ["Margin Watcher local market", admin])
    plan.call(provider, cd["provider"], "setACLAdmin", admin)
    acl = plan.deploy(arts["acl"], [provider])
    plan.call(provider, cd["provider"], "setACLManager", acl)
    plan.call(acl, cd["acl"], "addPoolAdmin", admin)
    libs: dict[str, str] = {}
    for lib in (*_POOL_LIBS[version], "ConfiguratorLogic"):
        libs[lib] = plan.deploy(arts[lib], libs=libs)
    if version == "3.6":
        # v3.6 has one pool-wide rate strategy, wired into the Pool implementation's constructor.
        strategy = plan.deploy(arts["strategy"], [provider])
        pool_impl = plan.deploy(arts["pool"], [provider, strategy], libs=libs)
    else:
        ray = RAY // 10_000
        rate_args = [provider, *(bps * ray for bps in RATE_BPS), 0, 0, 0, 0, 2000 * ray]
        strategy = plan.deploy(arts["strategy"], rate_args)
        pool_impl = plan.deploy(arts["pool"], [provider], libs=libs)
    # The implementations lock themselves (v3.6) or are never used directly; setPoolImpl inits the proxy.
    plan.call(provider, cd["provider"], "setPoolImpl", pool_impl)
    configurator_impl = plan.deploy(arts["configurator"], libs=libs)
    plan.call(provider, cd["provider"], "setPoolConfiguratorImpl", configurator_impl)
    assets: dict[str, str] = {}
    feeds: dict[str, str] = {}
    for r in reserves:
        assets[r.symbol] = plan.deploy(arts["token"], [f"Mock {r.symbol}", r.symbol, r.decimals])
    for r in reserves:
        feeds[r.symbol] = plan.deploy(arts["aggregator"], [r.price])
    # Base currency address(0) with unit 1e8 is how Aave's USD-denominated markets are configured.
    oracle = plan.deploy(
        arts["oracle"], [provider, list(assets.values()), list(feeds.values()), ZERO, ZERO, BASE_CURRENCY_UNIT]
    )
    plan.call(provider, cd["provider"], "setPriceOracle", oracle)
    plan.send()

    provider_c = w3.eth.contract(address=provider, abi=arts["provider"].abi)
    pool = to_checksum_address(provider_c.functions.getPool().call())
    configurator = to_checksum_address(provider_c.functions.getPoolConfigurator().call())

    # Stage 2: contracts that need the Pool proxy, then listing and risk configuration.
    data_provider = plan.deploy(arts["data_provider"], [provider])
    plan.call(provider, cd["provider"], "setPoolDataProvider", data_provider)
    if version == "3.6":
        # The treasury must be non-zero in v3.6; the admin stands in for the collector.
        atoken_impl = plan.deploy(arts["atoken"], [pool, ZERO, admin])
        vdebt_impl = plan.deploy(arts["variable_debt"], [pool, ZERO])
        rate_data = abi_encode(["uint16", "uint32", "uint32", "uint32"], list(RATE_BPS))
        inputs = [
            (
                atoken_impl,
                vdebt_impl,
                assets[r.symbol],
                f"Aave Local {r.symbol}",
                f"aLoc{r.symbol}",
                f"Aave Local Variable Debt {r.symbol}",
                f"variableDebtLoc{r.symbol}",
                b"",
                rate_data,
            )
            for r in reserves
        ]
    else:
        atoken_impl = plan.deploy(arts["atoken"], [pool])
        sdebt_impl = plan.deploy(arts["stable_debt"], [pool])
        vdebt_impl = plan.deploy(arts["variable_debt"], [pool])
        inputs = [
            (
                atoken_impl,
                sdebt_impl,
                vdebt_impl,
                r.decimals,
                strategy,
                assets[r.symbol],
                admin,
                ZERO,
                f"Aave Local {r.symbol}",
                f"aLoc{r.symbol}",
                f"Aave Local Variable Debt {r.symbol}",
                f"variableDebtLoc{r.symbol}",
                f"Aave Local Stable Debt {r.symbol}",
                f"stableDebtLoc{r.symbol}",
                b"",
            )
            for r in reserves
        ]
    for reserve_input in inputs:
        plan.call(configurator, cd["configurator"], "initReserves", [reserve_input], gas=GAS_INIT_RESERVE)
    for r in reserves:
        asset = assets[r.symbol]
        plan.call(
            configurator,
            cd["configurator"],
            "configureReserveAsCollateral",
            asset,
            r.ltv,
            r.liquidation_threshold,
            r.liquidation_bonus,
        )
        plan.call(configurator, cd["configurator"], "setReserveBorrowing", asset, True)
        plan.call(configurator, cd["configurator"], "setReserveFactor", asset, RESERVE_FACTOR_BPS)
    if emode is not None:
        e = emode
        if version == "3.6":
            plan.call(
                configurator,
                cd["configurator"],
                "setEModeCategory",
                e.category_id,
                e.ltv,
                e.liquidation_threshold,
                e.liquidation_bonus,
                e.label,
            )
            for symbol in e.assets:
                plan.call(
                    configurator, cd["configurator"], "setAssetCollateralInEMode", assets[symbol], e.category_id, True
                )
                plan.call(
                    configurator, cd["configurator"], "setAssetBorrowableInEMode", assets[symbol], e.category_id, True
                )
        else:
            # v3.0 categories may carry their own price source; address(0) keeps the reserves' own feeds.
            plan.call(
                configurator,
                cd["configurator"],
                "setEModeCategory",
                e.category_id,
                e.ltv,
                e.liquidation_threshold,
                e.liquidation_bonus,
                ZERO,
                e.label,
            )
            for symbol in e.assets:
                plan.call(configurator, cd["configurator"], "setAssetEModeCategory", assets[symbol], e.category_id)
    for r in reserves:
        # The admin tops up pool liquidity on demand; one standing approval saves a tx per top-up.
        plan.call(assets[r.symbol], cd["token"], "approve", pool, MAX_UINT, gas=GAS_ERC20)
    plan.send()

    pool_c = w3.eth.contract(address=pool, abi=arts["pool"].abi)
    data_provider_c = w3.eth.contract(address=data_provider, abi=arts["data_provider"].abi)
    a_tokens: dict[str, str] = {}
    vdebt_tokens: dict[str, str] = {}
    for symbol, asset in assets.items():
        a_token, _stable_debt, vdebt = data_provider_c.functions.getReserveTokensAddresses(asset).call()
        a_tokens[symbol] = to_checksum_address(a_token)
        vdebt_tokens[symbol] = to_checksum_address(vdebt)
    return AaveMarket(
        w3=w3,
        version=version,
        admin=admin,
        addresses_provider=provider,
        pool=pool_c,
        pool_configurator=w3.eth.contract(address=configurator, abi=arts["configurator"].abi),
        oracle=w3.eth.contract(address=oracle, abi=arts["oracle"].abi),
        data_provider=data_provider_c,
        acl_manager=acl,
        assets=assets,
        decimals={r.symbol: r.decimals for r in reserves},
        tokens={s: w3.eth.contract(address=a, abi=arts["token"].abi) for s, a in assets.items()},
        a_tokens=a_tokens,
        variable_debt_tokens=vdebt_tokens,
        price_sources=feeds,
        artifacts=arts,
    )
