"""Where this machine's torch gets the CPU bf16 channels-last weight gradient of a depthwise dilated convolution wrong:
for each input shape and dilation, `learner.bf16_channels_last_ok` (the channels-last weight gradient under bf16 autocast
against the contiguous one, random data, tolerance 5% of the largest entry) and the relative error of both against fp32.
The shapes include the main job's: JPU's 384-channel maps of the long configuration (16x32 in training, 32x64 at test)
and the fast configuration's 320-channel ASPP maps (4x8, 8x16). See `52_learner` (`CPUAutocast`) and `74_cli.main_job`.

    .venv/bin/python bench/bf16_dw_kernel.py [--threads 2]
"""
import argparse, warnings
import torch

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--threads', type=int, default=2)
a = ap.parse_args()
warnings.filterwarnings('ignore')
torch.set_num_threads(a.threads)
from boundaryseg.learner import bf16_channels_last_ok, conv_weight_grad

def rel_err(conv, shape, fmt):
    "Relative error (max |diff| / max |ref|) of the bf16 weight gradient in memory format `fmt` against fp32 (contiguous)."
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ref = conv_weight_grad(conv, x, torch.contiguous_format, bf16=False)
    return float((conv_weight_grad(conv, x, fmt) - ref).abs().max() / ref.abs().max())

print(f"torch {torch.__version__}, native bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
print(f"{'input (N, C, H, W)':<22} {'dilation':>8} {'kernels agree':>14} {'rel. err. channels-last':>24} {'rel. err. contiguous':>21}")
cases = [((8, 384, 16, 32), d) for d in (2, 4, 8)] + [((8, 384, 32, 64), d) for d in (2, 4, 8)] + \
        [((4, 320, 4, 8), d) for d in (3, 6, 9)] + [((4, 320, 8, 16), d) for d in (3, 6, 9)] + \
        [((2, 16, 16, 16), 2), ((2, 64, 16, 32), 2), ((4, 32, 32, 32), 2), ((4, 32, 32, 32), 1)]
for shape, d in cases:
    conv = torch.nn.Conv2d(shape[1], shape[1], 3, padding=d, dilation=d, groups=shape[1], bias=False)
    ok = bf16_channels_last_ok(conv, shape)
    print(f"{str(shape):<22} {d:>8} {str(ok):>14} {rel_err(conv, shape, torch.channels_last):>24.3g} {rel_err(conv, shape, torch.contiguous_format):>21.3g}", flush=True)
