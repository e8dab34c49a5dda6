"""Training backends behind one :class:`~core.train.backends.base.Trainer` protocol; :mod:`.registry` names them."""
