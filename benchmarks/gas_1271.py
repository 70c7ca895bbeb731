"""Gas of the ERC-1271 path: the operations that check a participant's signature, measured in one run on one
chain twice, once with A a key (its signature recovers to it: ``ecrecover`` only) and once with A an
``OwnedWallet1271`` whose owner key signs (the recovery gives the owner, A has code: the contract asks the
wallet's ``isValidSignature``, through a self-call bounded to 100,000 gas).

Run from the repository root::

    .venv/bin/python -m benchmarks.gas_1271      # measure, print, write results/gas-1271.json

Every transaction is sent by bob (a key) in both runs, so each difference is the signature check alone, not
the wallet's own ``execute`` call. What is measured: a unilateral close with a state both signed (bob
closes: the contract checks A's signature), a challenge with a newer one, a proof that A closed with a
state it revoked (A's revocation), and a cooperative close (both signatures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/gas_1271.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account.signers.local import LocalAccount

from paychan.chain import Chain, embedded_chain
from paychan.channel import Channel, agree_final, pay
from paychan.compile import compile_contracts
from paychan.contract import PaychanContract
from paychan.state import ChannelParams, SignedState
from paychan.wallets import WalletAccount, via_wallet

RESULTS = Path(__file__).resolve().parent / "results" / "gas-1271.json"
ETHER = 10**18
PERIOD = 3600
TX_GAS = 700_000  # explicit: skips estimation
OPERATIONS = ("close", "challenge", "prove_revoked", "cooperative_close")


def _open(contract: PaychanContract, a: LocalAccount | WalletAccount, bob: LocalAccount) -> ChannelParams:
    params, _ = contract.open_channel(a, bob.address, 5 * ETHER, challenge_period=PERIOD, gas=TX_GAS)
    contract.deposit(bob, params, bob.address, 3 * ETHER, gas=TX_GAS)
    return params


def _views(contract: PaychanContract, params: ChannelParams, a: Any, bob: LocalAccount) -> tuple[Channel, Channel]:
    """A's and bob's channels; bob checks A's signatures against the key that signs them."""
    signer = a.signer() if isinstance(a, WalletAccount) else a
    signing_address = a.signing_address if isinstance(a, WalletAccount) else a.address
    deposits = (5 * ETHER, 3 * ETHER)
    return (
        Channel(params, contract.domain, signer, deposits=deposits),
        Channel(params, contract.domain, bob, deposits=deposits, peer_signing_address=signing_address),
    )


def measure(contract: PaychanContract, a: LocalAccount | WalletAccount, bob: LocalAccount) -> dict[str, int]:
    """Gas used by each of ``OPERATIONS`` with A = ``a``, every transaction sent by ``bob``."""
    gas: dict[str, int] = {}

    params = _open(contract, a, bob)
    ours, theirs = _views(contract, params, a, bob)
    stale: SignedState = pay(ours, theirs, ETHER)
    latest = pay(ours, theirs, ETHER)
    gas["close"] = contract.close(bob, params, stale, gas=TX_GAS)["gasUsed"]
    gas["challenge"] = contract.challenge(bob, params, latest, gas=TX_GAS)["gasUsed"]

    params = _open(contract, a, bob)
    ours, theirs = _views(contract, params, a, bob)
    revoked = pay(ours, theirs, ETHER)
    pay(ours, theirs, ETHER)
    revocation = ours.sign_revocation()
    assert revocation is not None
    theirs.receive_revocation(*revocation)
    contract.close(a, params, revoked, gas=TX_GAS)  # A closes with a state it revoked (sent by A: not measured)
    gas["prove_revoked"] = contract.prove_revoked(bob, params, revocation[0].below_nonce, revocation[1], gas=TX_GAS)[
        "gasUsed"
    ]

    params = _open(contract, a, bob)
    ours, theirs = _views(contract, params, a, bob)
    pay(ours, theirs, ETHER)
    gas["cooperative_close"] = contract.cooperative_close(bob, params, agree_final(ours, theirs), gas=TX_GAS)["gasUsed"]
    return gas


def deploy_wallet(chain: Chain, owner: LocalAccount) -> WalletAccount:
    """An ``OwnedWallet1271`` owned by ``owner``, holding 20 ether."""
    code = compile_contracts(only=["contracts/test/OwnedWallet1271.sol"], include_test=True)["OwnedWallet1271"]
    init = chain.w3.eth.contract(abi=code.abi, bytecode=code.bytecode).constructor(owner.address).data_in_transaction
    created = chain.send(owner, {"data": init, "value": 20 * ETHER, "gas": 1_000_000})
    assert created["status"] == 1, "deploying the wallet failed"
    return via_wallet(created["contractAddress"], owner)


def run() -> dict[str, Any]:
    chain = embedded_chain()
    deployer, alice, bob, owner = chain.accounts[:4]
    contract, _ = PaychanContract.deploy(chain, deployer)
    key = measure(contract, alice, bob)
    wallet = measure(contract, deploy_wallet(chain, owner), bob)
    return {
        "what": "gas of the operations that check A's signature, with A a key (ecrecover) and with A an "
        "OwnedWallet1271 whose owner signs (ecrecover, then isValidSignature), same chain, same run, every "
        "transaction sent by bob",
        "chain": "embedded (eth-tester, py-evm)",
        "operations": {
            op: {
                "key": key[op],
                "erc1271": wallet[op],
                "extra": wallet[op] - key[op],
                "ratio": round(wallet[op] / key[op], 3),
            }
            for op in OPERATIONS
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)
    data = run()
    for op, row in data["operations"].items():
        print(f"{op:18} key {row['key']:>7,}  ERC-1271 {row['erc1271']:>7,}  +{row['extra']:,} ({row['ratio']}x)")
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
