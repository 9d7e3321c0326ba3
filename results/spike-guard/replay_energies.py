"""Replay the first N updates of a seed's documented training (without the spike guard) and record every update's
training energy, with the layers' gains sigma_max(W^l)^2 every 5 updates: what the history's 50-update means hide.

    python results/spike-guard/replay_energies.py 120 3 results/spike-guard/replay-s3.json

(about 30 s on 2 cores; the run folder goes to a temporary directory)."""
import json
import sys
import tempfile

from convngc import cli, schedule, stability


class _Enough(Exception):
    pass


def main(n, seed, out):
    rows, watch = [], schedule.BetaSchedule.after_update

    def after_update(self, model, update, energy):
        row = {"update": update, "energy": float(energy), "beta": model.cfg.beta}
        if update % 5 == 0:
            row["gains"] = [round(g, 2) for g in stability.gains(model.host_params(), model.cfg, iters=15)[1:]]
        rows.append(row)
        event = watch(self, model, update, energy)
        if update >= n:
            raise _Enough
        return event
    schedule.BetaSchedule.after_update = after_update
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cli.main(["train", "--dataset", "cifar10", "--batch-size", "100", "--lr", "3e-3", "--epochs", "4",
                      "--seed", str(seed), "--spike", "0", "--no-progress", "--out", tmp + "/run"])
        except _Enough:
            pass
    with open(out, "w") as f:
        json.dump({"command": "python " + " ".join(sys.argv), "updates": rows}, f, indent=0)
    for r in rows:
        if r["energy"] > 2 * min(x["energy"] for x in rows[max(0, r["update"] - 21):r["update"] - 1] or [r]):
            print(r)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
