"""Five hybrid-chip clients learn digits together; client 2 asks to be forgotten after round 3.

Run: .venv/bin/python examples/federated_digits.py [--rounds 5] [--ray]
(the same as ``avalanche-rm fl``). Data: scikit-learn's bundled digits (real):
a public 30 % pre-trains the base that every chip programs with its own
variability; the rest is split among the clients' owners. Without --ray the
rounds run on the in-process grid; with --ray on Flower's Ray simulation
engine, with the same ClientApp and ServerApp.
"""
from __future__ import annotations

import argparse

from avalanche_rm.jobs.fl import run_fl
from avalanche_rm.report import markdown_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--forget-client", type=int, default=2)
    ap.add_argument("--forget-round", type=int, default=3)
    ap.add_argument("--ray", action="store_true")
    a = ap.parse_args()
    rep, _ = run_fl(clients=a.clients, rounds=a.rounds, forget_client=a.forget_client, forget_round=a.forget_round,
                    ray=a.ray)
    print(f"data: {rep['data']}; engine: {rep['engine']}\n")
    print(markdown_table(rep["tables"]["rounds"]))
    print(markdown_table(rep["tables"]["forget request"]))


if __name__ == "__main__":
    main()
