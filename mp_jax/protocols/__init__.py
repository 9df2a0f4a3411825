"""The experiments' protocols, beside the models they train: :mod:`runs` (one named,
checkpointed training run and the :class:`runs.RunContext` a question's runs share) and
:mod:`activity` (Q3's protocol: a split by subject, the selection of the learning rate on
validation, the refit over seeds, the logistic baseline). The entry points under
``experiments/`` hold the configuration, call these and draw the figures."""
