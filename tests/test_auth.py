"""Only the owner can forget, each request once; the logs prove what happened; checkpoints cannot resurrect."""
import copy
import dataclasses
import json
import pickle
import time

import dill
import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin
from typer.testing import CliRunner

from avalanche_rm.benchmarks import public_private_digits
from avalanche_rm.cli import app
from avalanche_rm.hardware import get_preset
from avalanche_rm.strategies import (ShardedLoRAUnlearning, maybe_load_checkpoint, pretrain_and_program,
                                     save_checkpoint)
from avalanche_rm.strategies.checkpoint import CheckpointRefused
from avalanche_rm.strategies.forgetting import snapshot_state
from avalanche_rm.training import make_mlp
from avalanche_rm.unlearning import (AuditKey, AuditLog, ForgetRefused, ForgetRequest, KeyDirectory,
                                     SignedRequest, SigningKey, dataset_tensors, generate_keys, verify_log)
from forgotten_bytes import found, row_bytes

LAB = "test lab"
TRUST, KEYS = generate_keys(LAB, owners=range(5), controllers=["dpo"])
runner = CliRunner()


def signed(request: ForgetRequest, audience: str = LAB) -> SignedRequest:
    return KEYS[request.requester].sign(request, audience)


@pytest.fixture(scope="module")
def setup():
    sp = public_private_digits(1, public_fraction=0.3, n_owners=5, seed=0, public_classes=range(5))
    base = pretrain_and_program(make_mlp(), get_preset("paper-180nm"), sp.public_x, sp.public_y, public=True,
                                epochs=10)
    return sp, base


def strategy(sp, base, tmp_path=None, key=None, trust=TRUST, **kw):
    args = dict(n_shards=3, n_slices=2, rank=4, epochs_per_slice=2, eval_data=(sp.test_x, sp.test_y),
                evaluator=EvaluationPlugin(loggers=[]), trust=trust)
    if tmp_path is not None:
        args.update(audit_path=tmp_path / "audit.jsonl", audit_key=key)
    args.update(kw)
    return ShardedLoRAUnlearning(model=copy.deepcopy(base), **args)


def owner_samples(sp, owner, k=12):
    _, _, ids, owners = dataset_tensors(sp.benchmark.train_stream[0].dataset)
    return tuple(ids[owners == owner][:k].tolist())


def files_of(tmp_path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(tmp_path.glob("audit*"))}


def assert_unchanged(before, s, tmp_path=None, files=None):
    after = snapshot_state(s)
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    for k in ("ledger", "audit", "registry", "store", "forgotten"):
        assert before[k] == after[k], k
    if tmp_path is not None:
        assert files_of(tmp_path) == files


# ------------------------------------------------------------------ who may forget
def test_forged_altered_replayed_cross_owner_and_misaddressed_requests_change_nothing(setup, tmp_path):
    sp, base = setup
    key = AuditKey.generate()
    s = strategy(sp, base, tmp_path, key)
    s.train(sp.benchmark.train_stream[0])
    mine = owner_samples(sp, 2)
    good = signed(ForgetRequest(requester=2, sample_ids=mine))
    mallory = SigningKey.generate()
    other = owner_samples(sp, 3)
    forged_sig = dataclasses.replace(good, signature=mallory.sign(good.request, LAB).signature)
    altered = dataclasses.replace(good, request=ForgetRequest(requester=2, sample_ids=other,
                                                              request_id=good.request_id))
    bad = {
        "unsigned": (ForgetRequest(requester=2, sample_ids=mine), "unsigned.*key.sign"),
        "forged signature": (forged_sig, "does not verify"),
        "a key that is not owner 2's": (mallory.sign(ForgetRequest(requester=2, sample_ids=mine), LAB),
                                        "signed with key"),
        "altered after signing": (altered, "does not verify"),
        "cross-owner": (KEYS[3].sign(ForgetRequest(requester=3, sample_ids=mine), LAB), "does not own"),
        "another owner's data": (signed(ForgetRequest(requester=3, owner=2)), "may not forget owner 2"),
        "self-declared controller": (KEYS[2].sign(ForgetRequest(requester="dpo", classes=(7,)), LAB),
                                     "signed with key"),
        "a controller nobody registered": (KEYS[2].sign(ForgetRequest(requester="controller", classes=(7,)), LAB),
                                           "no public key"),
        "an owner asking for a class": (signed(ForgetRequest(requester=2, classes=(7,))), "data controller"),
        "another learner's request": (signed(ForgetRequest(requester=2, sample_ids=mine), "other lab"),
                                      "addressed to 'other lab'"),
        "from the future": (KEYS[2].sign(ForgetRequest(requester=2, sample_ids=mine), LAB,
                                         issued_at=int(time.time()) + 3600), "future"),
    }
    before, files = snapshot_state(s), files_of(tmp_path)
    for name, (req, why) in bad.items():
        with pytest.raises(ForgetRefused, match=why):
            s.forget(req)
        assert_unchanged(before, s, tmp_path, files)
    rec = s.forget(good)
    assert rec["principal"] == "owner:2" and rec["n_samples"] == len(mine) and rec["store_seq"] == 1
    assert rec["signature"]["audience"] == LAB and rec["digest_key_id"] == key.key_id
    before, files = snapshot_state(s), files_of(tmp_path)
    with pytest.raises(ForgetRefused, match="replay"):
        s.forget(good)
    assert_unchanged(before, s, tmp_path, files)
    # a controller's signature may forget any owner's samples and whole classes
    rec = s.forget(KEYS["dpo"].sign(ForgetRequest(requester="dpo", classes=(7,)), LAB))
    assert rec["principal"] == "controller:dpo" and rec["n_samples"] > 0

    # a new process on the same store (a restart): the used request is still refused, the forgotten ids unlearnable
    s2 = strategy(sp, base, tmp_path, key)
    assert s2.forget_core.store.seq == 2 and set(mine) <= set(s2.forgotten_ids.tolist())
    with pytest.raises(ValueError, match="forgotten earlier"):
        s2.train(sp.benchmark.train_stream[0])
    with pytest.raises(ForgetRefused, match="replay"):
        s2.forget_core.check(good)


def test_a_learner_without_keys_honours_nothing_and_keys_round_trip(setup, tmp_path):
    sp, base = setup
    s = strategy(sp, base, trust=None)
    s.train(sp.benchmark.train_stream[0])
    with pytest.raises(ForgetRefused, match="no key directory"):
        s.forget(signed(ForgetRequest(requester=2, owner=2)))
    # files: the learner's directory holds public keys only; a signing key loads back and still signs for it
    d = KeyDirectory.load(TRUST.save(tmp_path / "trust.json"))
    k2 = SigningKey.load(KEYS[2].save(tmp_path / "owner-2.key"))
    assert (tmp_path / "owner-2.key").stat().st_mode & 0o077 == 0
    assert d.verify(k2.sign(ForgetRequest(requester=2, owner=2), LAB)).owner == 2
    assert KEYS[2]._key.private_bytes_raw().hex() not in (tmp_path / "trust.json").read_text()
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(KEYS[2])
    with pytest.raises(ValueError, match="public keys only"):
        KeyDirectory(LAB).add_owner(1, KEYS[1])
    # a signed request survives JSON (as it travels) and still verifies; a tampered one does not
    req = signed(ForgetRequest(requester=2, sample_ids=(5, 3), method="neg_ce"))
    back = SignedRequest.from_json(req.to_json())
    assert back == req and d.verify(back).name == "owner:2"
    tampered = json.loads(req.to_json())
    tampered["request"]["method"] = "scrub"
    with pytest.raises(ForgetRefused, match="does not verify"):
        d.verify(SignedRequest.from_dict(tampered))
    r1, r2 = ForgetRequest(requester=2, owner=2), ForgetRequest(requester=2, owner=2)
    assert r1.request_id != r2.request_id and len(r1.request_id) >= 32  # random, not a process counter


# ------------------------------------------------------------------ tamper-evident logs
def _log(tmp_path, n=4):
    key = AuditKey.generate()
    key_file = key.save(tmp_path / "audit.key")
    log = AuditLog(tmp_path / "audit.jsonl", key)
    for i in range(n):
        log.append({"event": "honour", "n_samples": 10 + i, "sample_ids": [i, i + 100], "metrics": {"acc": 0.5}})
    return tmp_path / "audit.jsonl", key, key_file


def _verify(path, key_file):
    return runner.invoke(app, ["audit", "verify", str(path), "--key-file", str(key_file)])


def _edit(lines, i):
    rec = json.loads(lines[i])
    rec["n_samples"] += 1
    lines[i] = json.dumps(rec, sort_keys=True, separators=(",", ":"))


TAMPER = {  # name -> (change to the lines, expected first bad line, words of the message)
    "edit": (lambda ls: _edit(ls, 2), 3, "edited"),
    "delete": (lambda ls: ls.pop(2), 3, "deleted or moved"),
    "reorder": (lambda ls: ls.insert(3, ls.pop(2)), 3, "deleted or moved"),
    "truncate": (lambda ls: ls.pop(), 5, "truncated"),
}


@pytest.mark.parametrize("how", list(TAMPER))
def test_audit_verify_names_the_first_tampered_line(tmp_path, how):
    path, key, key_file = _log(tmp_path)
    res = _verify(path, key_file)
    assert res.exit_code == 0 and "ok, 5 lines" in res.output
    lines = path.read_text().splitlines()
    change, bad, words = TAMPER[how]
    change(lines)
    path.write_text("".join(line + "\n" for line in lines))
    res = _verify(path, key_file)
    assert res.exit_code == 1, res.output
    assert f"line {bad}:" in res.output and words in res.output, res.output
    with pytest.raises(ValueError, match=f"line {bad}"):  # and nobody appends to it
        AuditLog(path, key)


def test_a_line_spliced_from_another_log_under_the_same_key_is_caught(tmp_path):
    """MACs and line numbers alone would accept line 3 of another log made with the same key (the audit log and its
    store share one): the previous-line hash does not."""
    path, key, key_file = _log(tmp_path)
    other = AuditLog(tmp_path / "other.jsonl", key)
    for i in range(3):
        other.append({"event": "honour", "n_samples": 99, "sample_ids": [i]})
    lines = path.read_text().splitlines()
    lines[2] = (tmp_path / "other.jsonl").read_text().splitlines()[2]
    path.write_text("".join(line + "\n" for line in lines))
    res = _verify(path, key_file)
    assert res.exit_code == 1 and "line 3: previous-line hash does not match line 2" in res.output, res.output


def test_audit_verify_catches_a_missing_head_and_a_wrong_key_and_forgives_interrupted_writes(tmp_path):
    path, key, key_file = _log(tmp_path)
    other = AuditKey.generate().save(tmp_path / "other.key")
    res = _verify(path, other)
    assert res.exit_code == 1 and "line 1:" in res.output and "not under the key given" in res.output
    head = path.with_name("audit.jsonl.head")
    saved = head.read_bytes()
    head.unlink()
    res = _verify(path, key_file)
    assert res.exit_code == 1 and "head file audit.jsonl.head is missing" in res.output
    head.write_bytes(saved)
    # a process killed mid-write leaves an unterminated line, or a line whose head was not written: no fault
    with open(path, "ab") as f:
        f.write(b'{"event": "hon')
    res = _verify(path, key_file)
    assert res.exit_code == 0 and "interrupted write" in res.output
    log = AuditLog(path, key)  # reopening drops the torn line
    log.append({"event": "honour", "n_samples": 1})
    head_before = head.read_bytes()
    log.append({"event": "honour", "n_samples": 2})
    head.write_bytes(head_before)
    res = _verify(path, key_file)
    assert res.exit_code == 0 and "1 line(s) after the head" in res.output
    assert verify_log(path, key).lines == 7 and len(AuditLog(path, key).chain.existing_records()) == 6
    assert _verify(path, key_file).exit_code == 0
    # two writers on one log: the one that did not write last refuses rather than fork the chain
    a, b = AuditLog(path, key), AuditLog(path, key)
    a.append({"event": "honour", "n_samples": 3})
    with pytest.raises(ValueError, match="changed since this process last wrote it"):
        b.append({"event": "honour", "n_samples": 4})
    assert _verify(path, key_file).exit_code == 0


# ------------------------------------------------------------------ checkpoints cannot resurrect
def test_an_old_checkpoint_gets_every_later_request_reapplied(setup, tmp_path, monkeypatch):
    sp, base = setup
    key = AuditKey.generate()
    key.save(tmp_path / "audit.key")
    s = strategy(sp, base, tmp_path, key)
    s.train(sp.benchmark.train_stream[0])
    ckpt = tmp_path / "old.pkl"
    save_checkpoint(s, str(ckpt))
    x, _, ids, owners = dataset_tensors(sp.benchmark.train_stream[0].dataset)
    gone = ids[owners == 2]
    rows = row_bytes(x[owners == 2])
    assert len(rows) >= 40
    s.forget(signed(ForgetRequest(requester=2, owner=2)))
    assert found(ckpt.read_bytes(), rows) == len(rows)  # the old checkpoint holds every row

    # the control: with re-application switched off, loading the old checkpoint brings the rows back
    from avalanche_rm.strategies import checkpoint as ck

    with monkeypatch.context() as m:
        m.setattr(ck, "restore_forgetting", lambda *a, **k: [])
        back, _ = maybe_load_checkpoint(strategy(sp, base, tmp_path, key), str(ckpt))
        assert found(dill.dumps(back), rows) == len(rows) and len(back.forgotten_ids) == 0

    r, _ = maybe_load_checkpoint(strategy(sp, base, tmp_path, key), str(ckpt))
    assert torch.equal(torch.sort(r.forgotten_ids).values, torch.sort(gone).values)
    assert not bool(torch.isin(r.registry.ids, gone).any())
    assert r.audit_log[-1]["event"] == "reapply" and r.audit_log[-1]["n_samples"] == len(gone)
    assert "written at store seq 0" in r.audit_log[-1]["reason"]
    for k, v in s.model.state_dict().items():  # the same exact unlearning as the original request: bit-identical
        assert torch.equal(v, r.model.state_dict()[k]), k
    save_checkpoint(r, str(tmp_path / "new.pkl"))
    assert found(dill.dumps(r), rows) == 0 and found((tmp_path / "new.pkl").read_bytes(), rows) == 0
    blob = (tmp_path / "new.pkl").read_bytes()
    assert not any(k in blob for k in (key._secret, key._secret.hex().encode(), key._mac_key, key._digest_key))
    with pytest.raises(ValueError, match="forgotten earlier"):
        r.register_experience(sp.benchmark.train_stream[0])
    assert verify_log(tmp_path / "audit.jsonl", key).ok
    # loading a checkpoint written after the request re-applies nothing
    n = len(AuditLog(tmp_path / "audit.jsonl", key).chain.existing_records())
    maybe_load_checkpoint(strategy(sp, base, tmp_path, key), str(tmp_path / "new.pkl"))
    assert len(AuditLog(tmp_path / "audit.jsonl", key).chain.existing_records()) == n

    # `avalanche-rm checkpoint scrub` rewrites the old file (re-applied, atomically) or deletes it
    res = runner.invoke(app, ["checkpoint", "scrub", str(ckpt), "--store", str(tmp_path / "audit.forgotten.jsonl"),
                              "--key-file", str(tmp_path / "audit.key")])
    assert res.exit_code == 0 and "1 request(s) re-applied" in res.output, res.output
    assert found(ckpt.read_bytes(), rows) == 0
    maybe_load_checkpoint(strategy(sp, base, tmp_path, key), str(ckpt))
    assert len(AuditLog(tmp_path / "audit.jsonl", key).chain.existing_records()) == n + 1  # the scrub's record only
    res = runner.invoke(app, ["checkpoint", "scrub", str(ckpt), "--store", str(tmp_path / "audit.forgotten.jsonl"),
                              "--key-file", str(tmp_path / "audit.key"), "--delete"])
    assert res.exit_code == 0 and not ckpt.exists()


def test_a_checkpoint_that_cannot_be_checked_is_refused(setup, tmp_path):
    sp, base = setup
    key = AuditKey.generate()
    s = strategy(sp, base, tmp_path, key)
    s.train(sp.benchmark.train_stream[0])
    ckpt = str(tmp_path / "c.pkl")
    save_checkpoint(s, ckpt)
    s.forget(signed(ForgetRequest(requester=2, owner=2)))
    for fresh, why in ((strategy(sp, base), "no durable forgotten-ids store"),
                       (strategy(sp, base, store_path=tmp_path / "other.jsonl", audit_key=key), "not with this")):
        before = snapshot_state(fresh)
        with pytest.raises(CheckpointRefused, match=why):
            maybe_load_checkpoint(fresh, ckpt)
        assert_unchanged(before, fresh)
        assert fresh.forget_core.store.seq == 0 and len(fresh.registry) == 0
    # a store older than the checkpoint (replaced by a copy from before a request) is refused too
    save_checkpoint(s, ckpt)
    store_file = tmp_path / "audit.forgotten.jsonl"
    lines = store_file.read_text().splitlines()
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / "s.jsonl").write_text(lines[0] + "\n")  # the genesis line: the same store before any request
    head = json.loads(store_file.with_name(store_file.name + ".head").read_text())
    head.update(lines=1, last=__import__("hashlib").sha256(lines[0].encode()).hexdigest())
    del head["mac"]
    head["mac"] = key.mac(json.dumps(head, sort_keys=True, separators=(",", ":")).encode())
    (copy_dir / "s.jsonl.head").write_text(json.dumps(head))
    with pytest.raises(CheckpointRefused, match="truncated or replaced"):
        maybe_load_checkpoint(strategy(sp, base, store_path=copy_dir / "s.jsonl", audit_key=key), ckpt)
    # Avalanche's own loader bypasses the check: the unpickled state has no keys, so it honours nothing
    from avalanche.checkpointing import maybe_load_checkpoint as avalanche_load

    raw, _ = avalanche_load(strategy(sp, base, tmp_path, key), ckpt)
    with pytest.raises(ForgetRefused, match="no audit key attached"):
        raw.forget(signed(ForgetRequest(requester=3, owner=3)))
    # the explicit override loads without a store and says so in the log
    loose, _ = maybe_load_checkpoint(strategy(sp, base), ckpt, allow_unverified=True)
    assert loose.audit_log[-1]["event"] == "checkpoint-unverified"
    # a checkpoint from before the store existed: every stored request is re-applied where its data are held
    s_old = strategy(sp, base)
    s_old.train(sp.benchmark.train_stream[0])
    del s_old.forget_core.store
    save_checkpoint(s_old, str(tmp_path / "pre.pkl"))
    r, _ = maybe_load_checkpoint(strategy(sp, base, tmp_path, key), str(tmp_path / "pre.pkl"))
    assert r.audit_log[-1]["event"] == "reapply" and "predates" in r.audit_log[-1]["reason"]
    assert not bool(torch.isin(r.registry.ids, r.forgotten_ids).any()) and len(r.forgotten_ids) > 0
