"""What "anomalous" means for each nrt monitor class: one test per class.

nrt 0.3.0 reports a break only once it is confirmed; the alert ladder
(:mod:`forestwatch.alerts.ladder`) wants to know at every observation whether the pixel
already looks disturbed. Each test below answers that from what the monitor itself uses,
after ``monitor.monitor()`` has taken the observation, so an anomaly and a confirmed break
never disagree about the model:

* **IQR**: the residual is below the lower IQR band, ``q25 - sensitivity * (q75 - q25)``
  (the band nrt's IQR counts outliers against);
* **CCDC**: the residual is below ``-sensitivity * rmse`` (CCDC's own residual test);
* **EWMA**, **CuSum**, **MoSum**: the process (the EWMA of residuals, the cumulative sum,
  the moving sum) is below ``-process_fraction * boundary``, i.e. past a fraction
  (``alerts.process_fraction``, default 0.5) of the way to the threshold at which nrt
  confirms a break.

Only the loss direction counts (the index falls: NDVI, NBR and NDMI all drop when canopy
is lost); nrt's confirmation stays two-sided, as nrt makes it.

Every test returns the **strength** of the anomaly, a float32 array normalised so that
1.0 is the anomaly threshold (a pixel is anomalous where strength >= 1; NaN where the
pixel was not observed), which the ladder's confidence combines with the count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: monitor class name -> strength(monitor, residuals, process_fraction)
_TESTS: dict[str, Callable[..., np.ndarray]] = {}


def _register(name: str):
    def deco(fn):
        _TESTS[name] = fn
        return fn
    return deco


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(num, den, dtype=np.float32)
    out[np.isinf(out)] = np.nan
    return out


@_register("IQR")
def _iqr(monitor, residuals: np.ndarray, process_fraction: float) -> np.ndarray:
    iqr = monitor.q75 - monitor.q25
    # strength 1 at the lower band q25 - sensitivity * iqr
    return _ratio(monitor.q25 - residuals, monitor.sensitivity * iqr)


@_register("CCDC")
def _ccdc(monitor, residuals: np.ndarray, process_fraction: float) -> np.ndarray:
    return _ratio(-residuals, monitor.sensitivity * monitor.rmse)


def _process(monitor, residuals: np.ndarray, process_fraction: float) -> np.ndarray:
    strength = _ratio(-np.asarray(monitor.process), process_fraction * np.abs(monitor.boundary))
    strength[~np.isfinite(residuals)] = np.nan
    return strength


for _name in ("EWMA", "CuSum", "MoSum"):
    _TESTS[_name] = _process


def anomaly_strength(monitor, residuals: np.ndarray, *, process_fraction: float = 0.5
                     ) -> np.ndarray:
    """Strength of the loss anomaly of each pixel, float32, 1.0 = the anomaly threshold.

    ``monitor`` has just taken the observation whose ``residuals`` (observed minus
    predicted index, float, NaN = not observed) are given; see the module docstring for
    each class's test.
    """
    name = type(monitor).__name__
    try:
        test = _TESTS[name]
    except KeyError:
        raise ValueError(f"no anomaly test for monitor class {name!r}; known: "
                         f"{', '.join(sorted(_TESTS))}") from None
    return test(monitor, np.asarray(residuals), process_fraction)


__all__ = ["anomaly_strength"]
