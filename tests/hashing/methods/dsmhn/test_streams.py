import torch

from hashing.methods.dsmhn.streams import Frame2DStream, MlpStream, TextStream, Video3DStream


def test_streams_output_relaxed_codes_of_k_bits():
    torch.manual_seed(0)
    clips = torch.randn(3, 3, 4, 16, 16)
    for stream, x in (
        (Video3DStream(16, width=4), clips),
        (Frame2DStream(16, width=4), clips),
        (Frame2DStream(16, width=4), clips[:, :, 0]),
        (TextStream(30, 8, 16), torch.rand(3, 30)),
        (MlpStream(7, 8, 16), torch.randn(3, 7)),
    ):
        codes = stream.eval()(x)
        assert codes.shape == (3, 16)
        assert codes.abs().max() < 1


def test_mean_pooled_2d_stream_ignores_frame_order_but_3d_stream_does_not():
    torch.manual_seed(0)
    clips = torch.randn(2, 3, 4, 16, 16)
    reversed_clips = clips.flip(2)
    with torch.no_grad():
        frame2d, video3d = Frame2DStream(16, width=4).eval(), Video3DStream(16, width=4).eval()
        assert torch.allclose(frame2d(clips), frame2d(reversed_clips), atol=1e-6)
        assert not torch.allclose(video3d(clips), video3d(reversed_clips), atol=1e-3)


def test_torchvision_backbones_build_without_weights():
    stream = Video3DStream(16, arch="r3d18")
    assert stream.hash.linear.in_features == 512
