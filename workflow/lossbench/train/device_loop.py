"""Training on the JAX backend without Python per step: data on the device, steps fused, and
several runs of one model trained at once in one compiled step (a *pack*).

In:  one compiled Keras model per run, without augmentation layers (`lossbench.train.training`
     builds them so on JAX: Keras 3.15 refuses XLA for a model holding RandomTranslation),
     the runs' shared settings, the images once (uint8) with each run's indices of the images
     it fits and validates on, each run's seed and learning rate, the first epoch to train,
     each run's callbacks (`lossbench.train.callbacks`) and the steps fused into one call.
Out: every run's model trained to `config.epochs`, each run's callbacks called as Keras's
     `fit` calls them (epoch begin and end with the same logs: loss, accuracy, val_loss,
     val_accuracy; a batch end after each call), so the checkpoint, history.json and the
     projection work unchanged, run by run.

Why: Keras's `fit` on JAX slices each batch on the host and calls the step from Python. Here
the images are put on the device once, and one jitted call runs `steps` SGD steps (a
`lax.fori_loop` over Keras's own `train_step`): each step gathers its batch by index from the
epoch's order (`lossbench.core.batches.epoch_permutation`), augments it on the device
(`lossbench.core.augment.shift_and_flip`) and trains on it. The epoch's last, short batch has a
compiled call of its own shape.

Packs: one run at batch 32 leaves most of a GPU idle (an H200 trained ~26,000 images/s at batch
32, 80,664 at batch 512). A pack stacks its runs' states (weights, optimizer and metrics
variables) along a new leading axis and maps the step over it with `jax.vmap`: each run keeps
its own batch of 32, its own order and augmentation draws (its seed), its own initial weights
and its own learning rate, and XLA runs the runs' convolutions as one grouped convolution and
their dense layers as one batched matmul (the idea of HFTA, Wang et al., MLSys 2021). Nothing
mixes the runs: the result of a run is that of the same run alone, up to float32 rounding
where XLA orders a batched kernel's sums differently (`tests/test_packs.py` measures it). The
learning rate is the one value of Keras's step that is a constant of the traced program (the
initial rate of the optimizer's `InverseTimeDecay`); the step is traced with it replaced by an
input, one per run (`_learning_rate_input`), so runs of different rates share the program.

Validation runs on the device too: one compiled call per epoch for the whole validation set of
every run of the pack (Keras's own `test_step` over batches of VALIDATION_BATCH images in a
`lax.fori_loop`, the remainder in a second call), instead of `evaluate` at batch 32 from Python.
Accuracy is that of `evaluate`; the loss is the same mean, summed in another order.

Reproducibility: the augmentation's seed of a step is (`epoch_seed(seed, epoch)`, step), so
every draw is a function of (seed, epoch, step), and a run resumed after any epoch trains its
remaining epochs bit for bit as an uninterrupted run on the same backend and pack does. The
draws are not the Keras layers' draws: the two paths agree in distribution, not bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np

# Steps fused into one call when `train.steps_per_execution` is auto. On a GPU a step of
# batch 32 takes about a millisecond, so 64 steps hide the call's overhead. On a CPU one step
# per call: XLA's CPU backend ran the loop's body ten times slower than the same step outside
# a loop (width 0.5, batch 32, JAX 0.10.2, 2-core EPYC: 5.3 s against 0.57 s per step), and a
# CPU step takes a tenth of a second or more, so the call's overhead is a small share anyway.
AUTO_STEPS_PER_CALL = {"gpu": 64, "cpu": 1}

# Images per validation batch on the device: memory only (the accuracy does not depend on it,
# the loss only in rounding). 500 images of the full-width net hold ~0.2 GB of activations a
# run at the widest layer, so a pack of 24 validates in ~5 GB.
VALIDATION_BATCH = 500


def uses_device_loop() -> bool:
    """Whether training runs here: on the JAX backend (TensorFlow keeps Keras's `fit`)."""
    import keras

    return keras.backend.backend() == "jax"


def steps_per_call(setting, kind: str, full_batches: int) -> int:
    """Steps fused into one call: `train.steps_per_execution` when it is a number, else
    AUTO_STEPS_PER_CALL of the device `kind`; at most the epoch's full batches (and >= 1).
    It need not divide the epoch: the last call of an epoch runs the steps left."""
    wanted = AUTO_STEPS_PER_CALL[kind] if setting == "auto" else int(setting)
    return max(1, min(wanted, full_batches))


def loop_runtime(runtime, config, fit_count: int):
    """`runtime` (`lossbench.train.device.Runtime`) as the device loop runs on the JAX backend:
    XLA on, `steps_per_call` steps per call; unchanged on other backends."""
    if not uses_device_loop():
        return runtime
    steps = steps_per_call(config.steps_per_execution, runtime.device,
                           fit_count // config.batch_size)
    return dataclasses.replace(runtime, steps_per_execution=steps, jit_compile=True)


@contextlib.contextmanager
def _learning_rate_input(model, learning_rate):
    """While the step is traced, the optimizer's initial learning rate is `learning_rate` (a
    traced value) instead of the constant it was compiled with; put back afterwards. Keras's
    `InverseTimeDecay` converts `initial_learning_rate` to a tensor on every call, so the
    traced program computes rate / (1 + decay * t) from the input, in the same float32."""
    import keras

    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    schedule = optimizer._learning_rate
    if not isinstance(schedule, keras.optimizers.schedules.InverseTimeDecay):
        raise ValueError(
            f"the device loop needs the optimizer's rate as an InverseTimeDecay schedule (as "
            f"lossbench.train.training builds it), not {type(schedule).__name__}."
        )
    constant = schedule.initial_learning_rate
    schedule.initial_learning_rate = learning_rate
    try:
        yield
    finally:
        schedule.initial_learning_rate = constant


def compiled_steps(model, batch_size: int, stride: int, shift_fraction: float,
                   horizontal_flip: bool, pack: bool):
    """`_compile_steps`'s function, made once per model and settings (kept on the model), so
    that a second loop over the same model (a benchmark's) reuses the compiled code."""
    made = model.__dict__.setdefault("_lossbench_compiled_steps", {})
    key = (batch_size, stride, shift_fraction, horizontal_flip, pack)
    if key not in made:
        made[key] = _compile_steps(model, *key)
    return made[key]


def _compile_steps(model, batch_size: int, stride: int, shift_fraction: float,
                   horizontal_flip: bool, pack: bool):
    """A jitted function (state, learning_rate, images, labels, order, epoch_seed, first_step,
    count) -> (logs, state) running `count` (>= 1, not static) SGD steps of `batch_size`
    images from step `first_step` of the epoch: step s trains on
    images[order[s * stride:][:batch_size]], augmented with seed (epoch_seed, s). `state` is
    Keras's JAX training state (trainable, non-trainable, optimizer and metrics variables'
    values) and is donated. With `pack`, state, learning_rate, order and epoch_seed (and the
    logs) have a leading axis of one entry per run; images and labels are shared."""
    import jax
    import jax.numpy as jnp

    from lossbench.core.augment import shift_and_flip

    augment = shift_fraction > 0 or horizontal_flip

    def one_step(step, state, learning_rate, images, labels, order, epoch_seed):
        index = jax.lax.dynamic_slice_in_dim(order, step * stride, batch_size)
        batch = jnp.take(images, index, axis=0)
        if augment:
            seed = jnp.stack([epoch_seed, step.astype(jnp.uint32)])
            batch = shift_and_flip(batch, seed, shift_fraction, horizontal_flip)
        with _learning_rate_input(model, learning_rate):
            return model.train_step(state, (batch, jnp.take(labels, index, axis=0)))

    def run(state, learning_rate, images, labels, order, epoch_seed, first_step, count):
        arguments = (learning_rate, images, labels, order, epoch_seed)
        logs, state = one_step(first_step, state, *arguments)

        def body(offset, carried):
            return one_step(first_step + offset, carried[1], *arguments)

        return jax.lax.fori_loop(1, count, body, (logs, state))

    if pack:
        run = jax.vmap(run, in_axes=(0, 0, None, None, 0, 0, None, None))
    return jax.jit(run, donate_argnums=0)


def training_state(model, purge: bool = True):
    """Keras's JAX training state, taken out of the model's variables (as `fit` does; with
    `purge` the variables let go of their values, which the compiled call then reuses)."""
    return model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                optimizer_variables=True, metrics_variables=True,
                                purge_model_variables=purge)


def hand_back(model, state) -> None:
    """Make `state` the model's current state, written to its variables at the next sync."""
    trainable, non_trainable, optimizer, metrics = state
    model._jax_state = {"trainable_variables": trainable, "non_trainable_variables": non_trainable,
                        "optimizer_variables": optimizer, "metrics_variables": metrics}
    model._jax_state_synced = False


def _stack(states: list):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda *values: jnp.stack(values), *states)


def _member(stacked, index: int):
    import jax

    return jax.tree.map(lambda value: value[index], stacked)


@dataclasses.dataclass
class PackMember:
    """One run of a pack: its model (built from its seed, holding its state), seed, initial
    learning rate, the indices of the images it fits on and validates on (None: it does not
    validate), and its Keras callbacks."""

    model: object
    seed: int
    learning_rate: float
    fit_index: np.ndarray
    validation_index: np.ndarray | None
    callbacks: list


class PackData:
    """The images on the device, each run's order and seeds, and the compiled calls.

    `images`, `labels`: every image any run fits or validates on (uint8, int labels);
    `members`: the runs (`PackMember`), all fitting on the same number of images and
    validating on the same number (their own images). `steps`: steps per call.
    """

    def __init__(self, members: list[PackMember], images: np.ndarray, labels: np.ndarray,
                 config, steps: int):
        import jax

        counts = {len(member.fit_index) for member in members}
        validated = {None if m.validation_index is None else len(m.validation_index) for m in members}
        if len(counts) != 1 or len(validated) != 1:
            raise ValueError(
                "every run of a pack must fit on as many images as the others and validate on "
                f"as many (fit counts {sorted(counts)}, validation counts {sorted(validated, key=str)})."
            )
        self.members, self.pack = members, len(members) > 1
        first = members[0].model
        # The model's, the optimizer's and the metrics' variables exist before any state is taken.
        for member in members:
            member.model._symbolic_build(data_batch=(images[:1], labels[:1]))
        self.images = jax.device_put(images)
        self.labels = jax.device_put(labels.astype(np.int32))
        self.count, self.batch_size, self.shuffle = counts.pop(), config.batch_size, config.shuffle
        self.validation_count = validated.pop()
        self.full_batches, short = divmod(self.count, self.batch_size)
        self.steps_per_epoch = math.ceil(self.count / self.batch_size)
        self.steps = steps
        settings = (config.batch_size, config.shift_fraction, config.horizontal_flip, self.pack)
        self.full = compiled_steps(first, config.batch_size, *settings)
        self.short = compiled_steps(first, short, *settings) if short else None
        self.learning_rates = self._per_run([np.float32(m.learning_rate) for m in members])

    def _per_run(self, values: list):
        """`values` (one per run) on the device: stacked for a pack, the one value alone."""
        import jax

        return jax.device_put(np.stack(values) if self.pack else values[0])

    def epoch_inputs(self, epoch: int) -> tuple:
        """(orders, epoch seeds) of `epoch` on the device: each run's order of its fit images
        as indices into the shared images, and its epoch's augmentation seed."""
        from lossbench.core.augment import epoch_seed
        from lossbench.core.batches import epoch_permutation

        orders = [member.fit_index[epoch_permutation(self.count, member.seed, epoch, self.shuffle)]
                  .astype(np.int32) for member in self.members]
        seeds = [np.uint32(epoch_seed(member.seed, epoch)) for member in self.members]
        return self._per_run(orders), self._per_run(seeds)

    def state(self):
        """The runs' training states, taken out of their models (stacked for a pack)."""
        if not self.pack:
            return training_state(self.members[0].model)
        # Stacking copies the values, so the models keep theirs: a run that stopped keeps
        # the state of the epoch it stopped in, and is saved with it.
        return _stack([training_state(member.model, purge=False) for member in self.members])

    def hand_back(self, state, active: list[bool]) -> None:
        """Each active run's part of `state` made its model's state."""
        for index, member in enumerate(self.members):
            if active[index]:
                hand_back(member.model, _member(state, index) if self.pack else state)

    def calls(self, state, epoch: int):
        """Yield (last step of the call, logs, state) for each call of epoch `epoch`."""
        orders, seeds = self.epoch_inputs(epoch)
        arguments = (self.learning_rates, self.images, self.labels, orders, seeds)
        step = 0
        while step < self.steps_per_epoch:
            if step < self.full_batches:
                count = min(self.steps, self.full_batches - step)
                logs, state = self.full(state, *arguments, step, count)
            else:
                count = 1
                logs, state = self.short(state, *arguments, step, 1)
            step += count
            yield step - 1, logs, state

    def validate(self, state) -> list[dict]:
        """Each run's validation logs (loss, accuracy, ...) for the trained `state`, computed
        on the device: full batches of VALIDATION_BATCH in one call, the rest in another."""
        import jax
        import jax.numpy as jnp

        from lossbench.train import device_validation

        trainable, non_trainable, _, metrics = state
        metrics = jax.tree.map(jnp.zeros_like, metrics)  # Keras's metrics start at zero
        index = self._per_run([m.validation_index.astype(np.int32) for m in self.members])
        batch = min(VALIDATION_BATCH, self.validation_count)
        full, rest = divmod(self.validation_count, batch)
        logs, metrics = device_validation.compiled_validation(self.members[0].model, batch, self.pack)(
            (trainable, non_trainable), metrics, self.images, self.labels, index, 0, full)
        if rest:
            # The rest as one batch of its own shape, starting where the full batches end.
            tail = index[..., full * batch:] if self.pack else index[full * batch:]
            logs, metrics = device_validation.compiled_validation(self.members[0].model, rest, self.pack)(
                (trainable, non_trainable), metrics, self.images, self.labels, tail, 0, 1)
        logs = jax.device_get(logs)
        return [{name: value[index] if self.pack else value for name, value in logs.items()}
                for index in range(len(self.members))]


def fit_pack_on_device(members: list[PackMember], config, images: np.ndarray,
                       labels: np.ndarray, first_epoch: int, steps: int, verbose: int) -> None:
    """Train epochs `first_epoch + 1` to `config.epochs` of every run in `members` as Keras's
    `fit` would train each alone, with the batches gathered and augmented on the device,
    `steps` steps per call, all runs in one compiled step. A run that stops (a non-finite
    loss: its EpochRecorder stops its model) keeps its state of the epoch it stopped in and
    is no longer recorded; the others go on. Members without validation indices are not
    validated (a benchmark's loop)."""
    import jax
    import keras

    data = PackData(members, images, labels, config, steps)
    lists = [keras.callbacks.CallbackList(
        member.callbacks, add_history=True, add_progbar=verbose != 0 and not data.pack,
        verbose=verbose, epochs=config.epochs, steps=data.steps_per_epoch, model=member.model)
        for member in members]
    active, epoch_logs = [True] * len(members), [{} for _ in members]
    models = [member.model for member in members]
    for model, callbacks in zip(models, lists):
        model.stop_training = False
        callbacks.on_train_begin()
    try:
        for epoch in range(first_epoch, config.epochs):
            for index, model in enumerate(models):
                if active[index]:
                    model.reset_metrics()
                    lists[index].on_epoch_begin(epoch)
            state = data.state()
            for last_step, logs, state in data.calls(state, epoch):
                if not data.pack:  # a pack's state is split into its runs once an epoch
                    data.hand_back(state, active)
                logs = jax.device_get(logs)
                for index, callbacks in enumerate(lists):
                    if active[index]:
                        callbacks.on_train_batch_end(
                            last_step, {k: v[index] if data.pack else v for k, v in logs.items()})
                if not data.pack and models[0].stop_training:
                    break
            data.hand_back(state, active)
            validation = ([{}] * len(members) if members[0].validation_index is None
                          else data.validate(state))
            for index, model in enumerate(models):
                if not active[index]:
                    continue
                model.jax_state_sync()
                own = {k: v[index] if data.pack else v for k, v in logs.items()}
                epoch_logs[index] = {name: float(value) for name, value in
                                     model._get_metrics_result_or_logs(own).items()}
                epoch_logs[index].update({f"val_{name}": float(value)
                                          for name, value in validation[index].items()})
                lists[index].on_epoch_end(epoch, epoch_logs[index])
                active[index] = not model.stop_training
            if not any(active):
                break
    finally:
        for model in models:
            model.jax_state_sync()
            model._jax_state = None
    for callbacks, logs in zip(lists, epoch_logs):
        callbacks.on_train_end(logs=logs)


def fit_on_device(model, config, seed: int, fit_data: tuple, validation_data: tuple | None,
                  first_epoch: int, callbacks: list, steps: int, verbose: int) -> None:
    """Train one run (a pack of one) on its own arrays: `fit_data` and `validation_data`
    ((images, labels); None: nothing is validated, a benchmark's loop)."""
    images, labels = fit_data
    fit_index = np.arange(len(labels))
    validation_index = None
    if validation_data is not None:
        validation_index = len(labels) + np.arange(len(validation_data[1]))
        images = np.concatenate([images, validation_data[0]])
        labels = np.concatenate([labels, validation_data[1]])
    member = PackMember(model, seed, float(config.learning_rate), fit_index, validation_index,
                        callbacks)
    fit_pack_on_device([member], config, images, labels, first_epoch, steps, verbose)
