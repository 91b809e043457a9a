"""Batched linear measurement operators with their SVD / Fourier structure.

base      LinearOperator: A, A_adjoint, A_pinv, the SVD view (Vt, V, singulars, Ut, U), measure, noise_for
inpaint   Inpainting (structure "pixel_mask");            masks: random pixels, box, from a file
blur      Blur (structure "fourier_diagonal");            kernels: Gaussian, uniform, motion, from a file
superres  SuperResolution (structure "fourier_block"):    BlockAverage, or BlurDecimation (blur + decimation)
tasks     the named tasks and their families, make_operator, task_defaults, task_family
"""

from zsguide.operators.base import STRUCTURES, LinearOperator
from zsguide.operators.blur import Blur
from zsguide.operators.fourier import fft2_ortho, ifft2_ortho_real, kernel_symbol
from zsguide.operators.inpaint import Inpainting
from zsguide.operators.kernels import gaussian_kernel, load_kernel, motion_kernel, uniform_kernel
from zsguide.operators.masks import box_mask, load_mask, random_pixel_mask
from zsguide.operators.superres import BlockAverage, BlurDecimation, SuperResolution
from zsguide.operators.tasks import (
    TASK_FAMILIES,
    TASK_NAMES,
    TASKS,
    Param,
    TaskSpec,
    get_task,
    make_operator,
    task_defaults,
    task_family,
)

__all__ = [
    "STRUCTURES",
    "TASKS",
    "TASK_FAMILIES",
    "TASK_NAMES",
    "BlockAverage",
    "Blur",
    "BlurDecimation",
    "Inpainting",
    "LinearOperator",
    "Param",
    "SuperResolution",
    "TaskSpec",
    "box_mask",
    "fft2_ortho",
    "gaussian_kernel",
    "get_task",
    "ifft2_ortho_real",
    "kernel_symbol",
    "load_kernel",
    "load_mask",
    "make_operator",
    "motion_kernel",
    "random_pixel_mask",
    "task_defaults",
    "task_family",
    "uniform_kernel",
]
