import pytest

from longmem import config
from longmem.config import CaesarConfig, DataConfig, OptimConfig, RunConfig, TrainConfig
from longmem.errors import UserError


def test_validate_writes_the_resolved_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config.validate(RunConfig())
    assert cfg.train.steps == config.DEFAULT_STEPS
    cfg = config.validate(RunConfig(train=TrainConfig(minutes=5)))
    assert cfg.train.steps is None and cfg.train.minutes == 5
    cfg = RunConfig()
    cfg.data.text = "book.txt"
    assert config.validate(cfg).data.text == str(tmp_path / "book.txt")
    assert config.validate_caesar(CaesarConfig(optimizer="sgd")).lr == 1.0
    assert config.validate_caesar(CaesarConfig()).lr == 0.05


@pytest.mark.parametrize("field, value, message", [
    ("rho", 1.0, "--rho must be in [0, 1), not 1"),
    ("clip", -1.0, "--clip must be at least 0, not -1"),
    ("lr_decay", 0.0, "--lr-decay must be above 0, not 0"),
    ("eps", float("inf"), "--eps must be a finite number"),
])
def test_check_names_the_flag_and_the_range(field, value, message):
    cfg = RunConfig()
    setattr(cfg.optim, field, value)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        config.validate(cfg)


def test_from_dict_round_trips_and_names_an_unknown_field():
    cfg = RunConfig()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    saved = cfg.to_dict()
    saved["train"]["batch_size"] = 3
    with pytest.raises(UserError, match=r"run/config.json: unknown field 'train.batch_size' \(configuration format 1"):
        RunConfig.from_dict(saved, "run/config.json")
    with pytest.raises(UserError, match="unknown field 'schedule'"):
        RunConfig.from_dict({**cfg.to_dict(), "schedule": {}})


def test_runs_saved_before_a_default_changed_keep_what_they_trained_with():
    saved = RunConfig().to_dict()
    del saved["model"]["weight_drop"], saved["optim"]["lr_plateau"]
    old = RunConfig.from_dict(saved)
    assert old.model.weight_drop == 0.0 and old.optim.lr_plateau == 1.0
    assert RunConfig().model.weight_drop is None and RunConfig().optim.lr_plateau is None  # None: auto


def test_the_plateau_schedule_is_off_on_a_probe_unless_given():
    """A probe's held-out loss stalls until the model learns to look back: halving the rate at
    each stall left the default LSTM at chance on copy (11:64; with it off, 70% in 10 minutes)."""
    on_text = config.validate(RunConfig())
    on_probe = config.validate(RunConfig(data=DataConfig(corpus="probe:copy")))
    given = config.validate(RunConfig(data=DataConfig(corpus="probe:copy"), optim=OptimConfig(lr_plateau=0.25)))
    assert (on_text.optim.lr_plateau, on_probe.optim.lr_plateau, given.optim.lr_plateau) == (0.5, 1.0, 0.25)
    assert RunConfig.from_dict(on_probe.to_dict()).optim.lr_plateau == 1.0  # config.json keeps what was chosen


def test_weight_drop_is_the_lstm_s(tmp_path):
    from longmem.cli import build_parser

    args = build_parser().parse_args(["train", "--model", "hmlstm"])
    assert config.from_args(args).model.weight_drop == 0.0
    args = build_parser().parse_args(["train", "--model", "hmlstm", "--weight-drop", "0.2"])
    with pytest.raises(UserError, match="--weight-drop is for --model lstm, not hmlstm"):
        config.validate(config.from_args(args))


def test_the_learning_rate_is_the_model_s_own_unless_given():
    """mingru trains at 0.002 (at 0.005 it stayed on copy's plateau), the others at 0.005."""
    from longmem.config import ModelConfig

    rates = [config.validate(RunConfig(model=ModelConfig(model=m))).optim.lr for m in ("lstm", "mingru", "mlstm")]
    given = config.validate(RunConfig(model=ModelConfig(model="mingru"), optim=OptimConfig(lr=0.01)))
    assert rates == [config.LR, 0.002, config.LR] and config.LR == 0.005 and given.optim.lr == 0.01
    assert RunConfig.from_dict(given.to_dict()).optim.lr == 0.01  # config.json keeps what was chosen
