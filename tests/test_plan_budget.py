"""A plan's table budget (model/vit/compression_plan.py `budget.table_bytes`): the bytes it
counts per lut layer, by hand, against the report's count of the exported config, and a plan
over its budget refused by `nomac train` and `nomac report` before any training."""
import json

import pytest

from nomac.base.errors import NomacError
from nomac.cli import main
from nomac.model.lut_spec import lut_table_bytes
from nomac.model.vit.compression_plan import load_plan, plan_from_dict
from nomac.model.vit.report import run_report
from nomac.model.vit.tiny_vit import TinyViT, ViTShape


def plan(budget=None, **lut) -> dict:
    document = {"format": "nomac-plan/1", "name": "budgeted",
                "layers": [{"match": "blocks.*.qkv", "kind": "lut", "subvector": 2, "centroids": 16, **lut},
                           {"match": "blocks.*.fc2", "kind": "lut", "codebooks": 8, "centroids": 4,
                            "encoder": "tree"}],
                "training": {"method": "none"}}
    if budget is not None:
        document["budget"] = {"table_bytes": budget}
    return document


# the tiny ViT (E = 32, MLP 64): qkv 32 -> 96 in 16 pairs, 16 prototypes: 16*16*96 tables + 16*16*2
# prototypes; fc2 64 -> 32, 8 codebooks of 8 elements, tree of 4 leaves: 8*4*32 tables + 8*3
# thresholds + 8*2 split dimensions
QKV, FC2 = 16 * 16 * 96 + 16 * 16 * 2, 8 * 4 * 32 + 8 * 3 + 8 * 2
TOTAL = 2 * (QKV + FC2)


def test_the_table_bytes_of_each_lut_layer_by_hand():
    model = TinyViT()
    counted = plan_from_dict(plan()).table_bytes(model, model.shape.linear_names())
    assert counted == {"blocks.0.qkv": QKV, "blocks.0.fc2": FC2, "blocks.1.qkv": QKV, "blocks.1.fc2": FC2}
    assert lut_table_bytes(16, 16, 96, 2, "l1") == QKV and lut_table_bytes(8, 4, 32, 8, "tree") == FC2
    # a budget of exactly the bytes passes, one byte less is refused naming every layer
    plan_from_dict(plan(TOTAL)).check_budget(model)
    with pytest.raises(NomacError) as caught:
        plan_from_dict(plan(TOTAL - 1), "p.json").check_budget(model)
    assert str(caught.value) == (f"p.json: budget.table_bytes = {TOTAL - 1:,}: the plan's lut layers take {TOTAL:,} "
                                 f"bytes of tables and prototypes (blocks.0.qkv {QKV:,}, blocks.0.fc2 {FC2:,}, "
                                 f"blocks.1.qkv {QKV:,}, blocks.1.fc2 {FC2:,}); must be at most the budget")


def test_the_count_follows_the_model_it_compresses():
    """28x28 images in 7x7 patches: a lut patch embedding has 49 inputs, not 4."""
    document = {"format": "nomac-plan/1", "name": "p", "layers": [{"match": "patch_embed", "kind": "lut",
                                                                    "subvector": 1, "centroids": 8}]}
    small, large = TinyViT(), TinyViT(ViTShape(height=28, width=28, patch=7))
    p = plan_from_dict(document)
    assert p.table_bytes(small, ["patch_embed"]) == {"patch_embed": 4 * 8 * 32 + 4 * 8}
    assert p.table_bytes(large, ["patch_embed"]) == {"patch_embed": 49 * 8 * 32 + 49 * 8}


def test_the_bundled_plans_count_what_their_exported_configs_hold():
    """The report's table bytes of the bundled lut_train_v1_k8 model (its config) equal the plan's count."""
    from nomac.model.config import load_config
    from nomac.model.examples.vit import bundled_vit
    from nomac.model.vit.report import config_costs
    model = TinyViT()
    for name in ("lut_train_v1_k8", "lut_train_ice40_all", "mixed"):
        counted = sum(load_plan(name).table_bytes(model, model.shape.linear_names()).values())
        assert counted == config_costs(load_config(bundled_vit(name))).table_bytes, name


def test_train_and_report_refuse_a_plan_over_its_budget_before_any_training(tmp_path, capsys):
    path = tmp_path / "budgeted.json"
    path.write_text(json.dumps(plan(1000)))
    out = tmp_path / "vit"
    assert main(["train", "--plan", str(path), "-o", str(out), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"budget.table_bytes = 1,000: the plan's lut layers take {TOTAL:,} bytes" in error
    assert not out.exists()                                   # no teacher was trained
    with pytest.raises(NomacError, match="budget.table_bytes = 1,000"):
        run_report(["dense", str(path)], [0], "digits", out, progress=False, log=lambda line: None)
    assert not out.exists()
