"""Learner configs. Defaults run on one CPU machine with the default model; configs/*.yaml change the rest."""

from __future__ import annotations

from dataclasses import dataclass, field

from data.embedded import TEST_PATH, TRAIN_PATH
from data.parser import LABEL_ORDERS
from memroute.core.config import check_choice, check_min
from memroute.core.models import DTYPES

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SCHEDULES = ("cosine", "linear", "constant")
LOSS_KINDS = ("is", "ppo", "tis")
KL_ESTIMATORS = ("k1", "k3")
KL_REFERENCES = ("base", "start")
AGGREGATES = ("token", "sequence")


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"  # a known name (smollm2-135m, tiny) or any HF model path / hub id
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32 (auto: bfloat16 on GPU, float32 on CPU)
    gradient_checkpointing: bool = False

    def __post_init__(self):
        check_choice("dtype", self.dtype, DTYPES)


@dataclass
class LoraConfig:
    rank: int = 32
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(ALL_PROJECTIONS))
    # LoRA in the last N decoder layers only (peft's layers_to_transform); None = every layer. Backward then
    # stops at the lowest adapted layer, so fewer layers train faster with less capacity (the measured ratios:
    # bench/results/lora_depth.json).
    top_layers: int | None = None

    def __post_init__(self):
        check_min("rank", self.rank, 1)
        check_min("alpha", self.alpha, 0, inclusive=False)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one projection")
        check_min("top_layers", self.top_layers, 1, optional=True)


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 10
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    max_grad_norm: float = 1.0
    # LoRA+ (peft's create_loraplus_optimizer): the B matrices learn at lr * loraplus_ratio; None = plain AdamW
    loraplus_ratio: float | None = None

    def __post_init__(self):
        check_min("lr", self.lr, 0, inclusive=False)
        check_min("warmup_steps", self.warmup_steps, 0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_min("weight_decay", self.weight_decay, 0)
        check_min("max_grad_norm", self.max_grad_norm, 0, inclusive=False)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)!r}")
        check_min("loraplus_ratio", self.loraplus_ratio, 1, optional=True)


@dataclass
class TrunkConfig:
    # The frozen-trunk cache (learner.trunk_cache): with lora.top_layers=k, the layers below the adapter run once
    # per example (no grad) and every epoch trains the top k layers on their stored output.
    cache: bool = False
    dtype: str = "float16"  # float16 | float32 (storage; float32 gives the uncached path's gradients)
    cache_dir: str | None = None  # None: <run_dir>/trunk_cache; share one folder between runs of the same model

    def __post_init__(self):
        check_choice("dtype", self.dtype, ("float16", "float32"))


@dataclass
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    # The prompt tokens every example shares (chat template + system message) run once per micro-batch, not
    # once per example (learner.segment); same loss and gradients up to float rounding.
    shared_prefix: bool = True
    # Start from this saved LoRA adapter (e.g. memroute/router or an earlier run's adapter/) with a fresh
    # optimizer and schedule: how training continues across machines. Its LoRA settings win over `lora`.
    init_adapter: str | None = None
    # With init_adapter: adapt lora.top_layers layers, the adapter's own plus new ones below them that start as
    # the identity (B = 0), so the run starts from exactly the saved router with more capacity (learner.lora).
    widen_adapter: bool = False
    # > 0: examples with the teacher's `label_rationale` go on with a "why?" turn and the rationale, each of its
    # tokens weighing this much in the loss against 1 for an answer token (learner.sft_data); 0: answers only.
    rationale_weight: float = 0.0
    # How an answer lists its labels: "taxonomy" order, or "frequency" (most frequent in train_data first).
    label_order: str = "taxonomy"
    train_data: str = str(TRAIN_PATH)
    eval_data: str = str(TEST_PATH)
    run_dir: str = "runs/sft"
    epochs: int = 1
    batch_size: int = 8  # examples per optimizer step, over all workers and accumulation micro-batches
    grad_accum: int = 1  # micro-batches per optimizer step on each worker
    max_seq_len: int = 1024  # longer examples are refused with an error naming them, never silently cut
    max_steps: int | None = None  # stop early (smoke runs, benchmarks)
    num_workers: int = 1  # Ray Train data-parallel workers
    use_gpu: bool = False
    cpus_per_worker: int = 1
    seed: int = 0
    checkpoint_every: int = 25  # optimizer steps
    log_every: int = 1
    keep_checkpoints: int | None = 3  # newest Ray Train checkpoints kept in <run_dir>/train/ (None: all)
    resume_from: str | None = None  # a checkpoint folder to start from; by default a run_dir resumes its latest

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum", "max_seq_len", "num_workers", "cpus_per_worker",
                     "checkpoint_every", "log_every"):
            check_min(name, getattr(self, name), 1)
        check_min("max_steps", self.max_steps, 1, optional=True)
        if not 0.0 <= self.rationale_weight <= 1.0:
            raise ValueError(f"rationale_weight must be within [0, 1], got {self.rationale_weight!r}")
        check_choice("label_order", self.label_order, LABEL_ORDERS)
        check_min("keep_checkpoints", self.keep_checkpoints, 1, optional=True)
        if self.widen_adapter and not (self.init_adapter and self.lora.top_layers):
            raise ValueError("widen_adapter=true needs init_adapter (the adapter to widen) and lora.top_layers=k "
                             "(how many layers the widened adapter covers)")
        if self.trunk.cache and self.lora.top_layers is None and not self.init_adapter:
            raise ValueError("trunk.cache=true needs lora.top_layers=k (the layers below the adapter are the trunk)")


@dataclass
class LossConfig:
    kind: str = "is"  # is (importance-sampled PG, the reference's) | ppo (clipped) | tis (truncated IS weights)
    clip_eps: float = 0.2  # ppo
    tis_cap: float = 2.0  # tis: cap on the learner/sampler probability ratio
    kl_coef: float = 0.0  # weight of the KL penalty to the reference policy (kl_reference)
    kl_estimator: str = "k3"  # k1 | k3
    # the KL reference: `base` = the base model (adapter disabled); `start` = the adapter the learner started from
    # (learner.adapter, e.g. the SFT router), kept frozen beside the trained one, so RL sharpens the SFT policy
    # instead of being pulled back to the untrained model
    kl_reference: str = "base"
    track_kl: bool = True  # report the KL to the reference even when kl_coef is 0 (one extra no-grad forward)
    aggregate: str = "token"  # token: mean over all completion tokens of the batch | sequence

    def __post_init__(self):
        check_choice("kind", self.kind, LOSS_KINDS)
        check_choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        check_choice("kl_reference", self.kl_reference, KL_REFERENCES)
        check_choice("aggregate", self.aggregate, AGGREGATES)
        check_min("kl_coef", self.kl_coef, 0)
        check_min("clip_eps", self.clip_eps, 0, inclusive=False)
        check_min("tis_cap", self.tis_cap, 0, inclusive=False)


@dataclass
class LearnerConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-5, warmup_steps=0, schedule="constant"))
    loss: LossConfig = field(default_factory=LossConfig)
    adapter: str | None = None  # start from this LoRA adapter (an SFT result); None = a fresh adapter
    num_learners: int = 1  # data-parallel learner actors (gradients all-reduced over a torch.distributed group)
    use_gpu: bool = False
    cpus_per_learner: int = 1
    # torch threads of each learner (None: cpus_per_learner). In sync mode on one machine the learner and the
    # rollout workers take turns, so the learner can use the workers' cores too while they wait (bench.rl_step)
    threads: int | None = None
    total_steps: int = 100  # for the LR schedule
    seed: int = 0

    def __post_init__(self):
        check_min("num_learners", self.num_learners, 1)
        check_min("cpus_per_learner", self.cpus_per_learner, 0, inclusive=False)
        check_min("threads", self.threads, 1, optional=True)
        check_min("total_steps", self.total_steps, 1)
        if self.loss.kl_reference == "start" and not self.adapter:
            raise ValueError("loss.kl_reference=start needs adapter (the adapter RL starts from, e.g. an SFT router)")
