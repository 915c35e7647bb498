"""PyTensor pieces of the slab families that are not plain tensor algebra.

:class:`QuadratureProposal` places the quadrature nodes of the logit-normal slab
(:func:`bayes_regimes.logitnormal_quadrature._proposal`: mode of the integrand by
Newton's method and the widths of its two sides). It is one opaque op computed with
numpy, for two reasons: written as tensor algebra, PyTensor's algebraic rewrites of
the gradient graph (distributing products over the sums of the Newton iterations)
take many minutes; and the integral does not depend on where the nodes sit (beyond the
quadrature error), so the op has no gradient. Under nutpie it calls the same
numba-compiled code (:func:`bayes_regimes.logitnormal_quadrature.compiled_proposal`);
the numpyro (JAX) sampler does not support the op.

This module imports PyTensor; :mod:`bayes_regimes.slabs` imports it only when a
model is built.

Examples
--------
>>> import numpy as np
>>> import pytensor.tensor as pt
>>> k, n, loc, scale = (pt.dvector(v) for v in "k n loc scale".split())
>>> centre, width = quadrature_proposal(k, n, loc, scale)
>>> out = [v.eval({k: [0.0], n: [10.0], loc: [-2.0], scale: [1.0]}) for v in (centre, width)]
>>> bool(out[0][0] < -2.0 and out[1][0] > 0)
True
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op


class QuadratureProposal(Op):
    """``(k, n, loc, scale) -> (centre, width)`` of the logit-normal quadrature, vectors."""

    __props__ = ()

    def make_node(self, k, n, loc, scale):
        inputs = [pt.cast(pt.as_tensor_variable(v), "float64") for v in (k, n, loc, scale)]
        return Apply(self, inputs, [pt.dvector(), pt.dvector()])

    def perform(self, node, inputs, output_storage):
        from bayes_regimes.logitnormal_quadrature import _proposal

        centre, width = _proposal(*inputs)
        output_storage[0][0] = np.asarray(centre, dtype=np.float64)
        output_storage[1][0] = np.asarray(width, dtype=np.float64)

    def infer_shape(self, node, shapes):
        return [shapes[0], shapes[0]]

    def connection_pattern(self, node):
        return [[False, False] for _ in node.inputs]

    def grad(self, inputs, output_grads):
        return [disconnected_type() for _ in inputs]


_OP = QuadratureProposal()


def _register_numba() -> None:
    """Under nutpie, call the numba-compiled code of :mod:`bayes_regimes.logitnormal_quadrature`."""
    try:
        import numba
        from pytensor.link.numba.dispatch.basic import numba_funcify
    except ImportError:  # pragma: no cover - numba absent
        return

    @numba_funcify.register(QuadratureProposal)
    def _numba_quadrature_proposal(op, node, **kwargs):
        from bayes_regimes.logitnormal_quadrature import _WIDTH, compiled_proposal

        flat = compiled_proposal()

        @numba.njit
        def proposal(k, n, loc, scale):
            return flat(k, n, loc, scale, _WIDTH)

        return proposal


_register_numba()


def quadrature_proposal(k, n, loc, scale):
    """Centre and width of the quadrature's Gaussian per pattern (no gradient)."""
    return _OP(k, n, loc, scale)
