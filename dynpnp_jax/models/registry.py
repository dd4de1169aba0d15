"""Built-in registry entries: which upstream file converts into which Flax network.

The weights table in README.md / weights/README.md is generated from these entries
(``python -m dynpnp_jax.weights_table``); keep URLs and sha256 here as the single source.
"""
from __future__ import annotations

from ..convert.matconvnet import dncnn_from_mat
from ..convert.torch_state import dncnn_from_pth
from ..networks import Network
from ..weights import UpstreamFile, WeightSpec, register
from .dncnn import DnCNN

_DNCNN_RAW = "https://github.com/cszn/DnCNN/raw/master/model"
_DNCNN_LICENCE = ("no licence file in cszn/DnCNN (research release; fetched from the authors' "
                  "repository, never redistributed)")


def _dncnn(name: str, depth: int, channels: int):
    def make(variables) -> Network:
        return Network(module=DnCNN(depth=depth, channels=channels), variables=variables,
                       kind="residual", channels=channels, multiple=1, name=name)
    return make


def _single(fn):
    return lambda files: fn(next(iter(files.values())))


_DNCNN_S = {15: "657d5115fa05d371dbf0df1f0a931eff274dae29d08a9cc0824a28caf2460e21",
            25: "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b",
            50: "517dc0b55a8da2c129704ed7921b8557aac40cf3aae9f700dc41a9e25cad0983"}
for _sigma, _sha in _DNCNN_S.items():
    register(WeightSpec(
        name=f"dncnn-s{_sigma}",
        files=(UpstreamFile(f"dncnn/sigma={_sigma}.mat", _sha,
                            f"{_DNCNN_RAW}/specifics/sigma={_sigma}.mat"),),
        convert=_single(dncnn_from_mat), network=_dncnn(f"dncnn-s{_sigma}", 17, 1),
        description=f"DnCNN-S, gray, sigma={_sigma} (17 convs, BN folded)",
        source="cszn/DnCNN model/specifics (MatConvNet v7.3)", licence=_DNCNN_LICENCE))

register(WeightSpec(
    name="dncnn-s25-kair",
    files=(UpstreamFile("dncnn/kair_dncnn_25.pth",
                        "0451a70de9b672ae037270498fbb1c17a1c1c4403785df586ff65df5b858e5b0",
                        "https://github.com/cszn/KAIR/releases/download/v1.0/dncnn_25.pth"),),
    convert=_single(dncnn_from_pth), network=_dncnn("dncnn-s25-kair", 17, 1),
    description="DnCNN-S, gray, sigma=25, PyTorch state dict (equals dncnn-s25)",
    source="cszn/KAIR model_zoo/dncnn_25.pth", licence="MIT (KAIR)", converter_needs_torch=True))

register(WeightSpec(
    name="dncnn-b-gray",
    files=(UpstreamFile("dncnn/GD_Gray_Blind.mat",
                        "37f76da0b71dd2b2789ce91848fe2f184ab486203c9af9ac1b98199b60ea02b0",
                        f"{_DNCNN_RAW}/GD_Gray_Blind.mat"),),
    convert=_single(dncnn_from_mat), network=_dncnn("dncnn-b-gray", 20, 1),
    description="DnCNN-B, gray, blind sigma 0..55 (20 convs)",
    source="cszn/DnCNN model/ (MatConvNet v7.3)", licence=_DNCNN_LICENCE))

register(WeightSpec(
    name="dncnn-b-color",
    files=(UpstreamFile("dncnn/GD_Color_Blind.mat",
                        "57db5437a44037e7675a99042fe7b14d3dcdf1c333d3ec665855566e8a59795c",
                        f"{_DNCNN_RAW}/GD_Color_Blind.mat"),),
    convert=_single(dncnn_from_mat), network=_dncnn("dncnn-b-color", 20, 3),
    description="CDnCNN-B, colour, blind sigma 0..55 (20 convs); the paper's noise estimator g "
                "for deblurring",
    source="cszn/DnCNN model/ (MatConvNet v7.3)", licence=_DNCNN_LICENCE))


# =============================================================================== DMPHN
# DMPHN (Zhang et al., CVPR 2019) deblurring networks, HongguangZhang/DMPHN-cvpr19-master
# `checkpoints/`: one legacy torch.save state dict per encoder / decoder (.pkl). Converting needs
# torch (dynpnp_jax.convert.torch_legacy); running them does not. Kind 'image': the module does
# the -0.5 / +0.5 of the authors' test scripts itself.
from ..convert.torch_legacy import dmphn_from_files  # noqa: E402
from .dmphn import DMPHN, StackDMPHN, network_multiple  # noqa: E402

_DMPHN_RAW = "https://github.com/HongguangZhang/DMPHN-cvpr19-master/raw/master/checkpoints"
_DMPHN_SOURCE = ("HongguangZhang/DMPHN-cvpr19-master checkpoints/{folder} (legacy torch.save "
                 "state dicts); architecture models.py, wiring {script}")
_DMPHN_LICENCE = ("no licence file in HongguangZhang/DMPHN-cvpr19-master: all rights reserved by "
                  "the authors; the weights are downloaded from the authors' repository, not "
                  "redistributed")

_DMPHN_SHA = {
    "DMPHN_1_2_4/decoder_lv1.pkl": "923fe68db2a9fb97c45082984e4371768f8d7d27824febcdd95615c3841e9824",
    "DMPHN_1_2_4/decoder_lv2.pkl": "d324a23f676c624f68ed20cad13d5bca5fa3281922ab20383c4c4713138233d2",
    "DMPHN_1_2_4/decoder_lv3.pkl": "652c12753b2eb15523cfdb0f1f280d0dd258aceb3464d9da637d2b6b5b1aa5bb",
    "DMPHN_1_2_4/encoder_lv1.pkl": "64b21c627f67382b20d472689a4766c6426d1f3b11763e73cde0cd13270064e1",
    "DMPHN_1_2_4/encoder_lv2.pkl": "816cdef4165ef81438da0c2226491b1a820ebbc1a3c3d175f56338111da7546d",
    "DMPHN_1_2_4/encoder_lv3.pkl": "898f79b659fd4a4ea1b098d186d42345e6d5fd12ad1ea22eb785c3484f93aab2",
    "DMPHN_1_2_4_8/decoder_lv1.pkl": "387a0ee8dd945052d069cdce6e6322ec9c93173896a28a72ac2be211bb0a78b2",
    "DMPHN_1_2_4_8/decoder_lv2.pkl": "9ec171ef8513eb85598af0c150904dee1aafe2674416a1878a3f093752721c08",
    "DMPHN_1_2_4_8/decoder_lv3.pkl": "aff3d672b9c81bc9067fe8e111f1901d9e78269fdb103c3f56d7690bec1aa740",
    "DMPHN_1_2_4_8/decoder_lv4.pkl": "5f88c7117f902ce7087ba18fc2b4ec395680d2ad2e6ddc0931284c8e4f1c25e5",
    "DMPHN_1_2_4_8/encoder_lv1.pkl": "938651e29071b661d59909b68d1772d590c3a7a7191cebee22b521dd78af84c0",
    "DMPHN_1_2_4_8/encoder_lv2.pkl": "1357fd72cec9da556864bf3d1156879d154f40efb1b806547b713c4bf3877fa2",
    "DMPHN_1_2_4_8/encoder_lv3.pkl": "c9864598889dca34503211e94978e056135d6ad9e8b7e297bf076665997a55ef",
    "DMPHN_1_2_4_8/encoder_lv4.pkl": "01de21b48fc6b216c737acb3fe854ed085f68d93b498f7f0862872606e99f632",
    "SDNet4/decoder_s1_lv1.pkl": "742090cc26b80cb7e490632bc2a39a8a307d80bf4a1238d70d719d9b23a215f2",
    "SDNet4/decoder_s1_lv2.pkl": "6b54f3a75747d78446457943f5d315ba265950d86454e0056dba9a83bce97556",
    "SDNet4/decoder_s1_lv3.pkl": "d016d669a015edf6242e089082d1c55b885c53daba4b85118539dc741f2860e0",
    "SDNet4/decoder_s2_lv1.pkl": "f41d84bb03d5ddee44c9e31d073d499c10892ebd2d3e50c14a4651556f2b890b",
    "SDNet4/decoder_s2_lv2.pkl": "987694789a7c7de31835c9e60a32eb26d369d0036520a4d718710982d9ef4331",
    "SDNet4/decoder_s2_lv3.pkl": "2d5f8419144d4fb4c32350e400a1c2daa94025109b45c56f1331a534606bd433",
    "SDNet4/decoder_s3_lv1.pkl": "d1266e04a2a4e591e8cfa9975c054748eb2b0b9a059ffcc980882b3b803380cc",
    "SDNet4/decoder_s3_lv2.pkl": "27c8d2d1dd45973fffda2b14c5143549b08e11b822535acd9530414e5e52a576",
    "SDNet4/decoder_s3_lv3.pkl": "6c49f544d97bf4c2a9842e29605ec033b8409405be36956df350b2480aef9466",
    "SDNet4/decoder_s4_lv1.pkl": "3c80b9565eb568ef799637c2e3e20cb6f4da063ad121da9ebdf77a9cd97aced5",
    "SDNet4/decoder_s4_lv2.pkl": "a314cefb4f78803305cca94a5771c6ac61b826cdefbb52d9f2a7cb729e5297d8",
    "SDNet4/decoder_s4_lv3.pkl": "0686bb91604e93325da35ce324936b40e2e23524549f02bf76f9613e87b21117",
    "SDNet4/encoder_s1_lv1.pkl": "276842e365a2497ad4ad9861d55596490843c96dff5b0d6b629d1d01f20aa2d8",
    "SDNet4/encoder_s1_lv2.pkl": "cffbbdd5856970bde6c26c8867344074edb535844f45ec71c64ec2c7c65d5841",
    "SDNet4/encoder_s1_lv3.pkl": "985ec1ec43b6796aec17e9bcccf273a9ab16cece2db08df862edc103f56f0674",
    "SDNet4/encoder_s2_lv1.pkl": "548ba90ba30e9652ae6ec690ed0c381a185f1f1e0c1f1f72e0dbf635b1910955",
    "SDNet4/encoder_s2_lv2.pkl": "61aa3debb355872da328b22d3827ad2d81bd4baeb4b5deb90aefa01069913e36",
    "SDNet4/encoder_s2_lv3.pkl": "8ba77263cfee954fc43d9f056f5bc682ae935d2b01e9cdebf6451f156bb83cbe",
    "SDNet4/encoder_s3_lv1.pkl": "1bcf967ed2d504ed7f7575acafeaca8e817a831d00731a83d0694240760cf052",
    "SDNet4/encoder_s3_lv2.pkl": "84ac41f13ae51914dfd4e27de5431484b4641340a9bd95fe4cf46afa6f38fa6d",
    "SDNet4/encoder_s3_lv3.pkl": "58ba75c47591ceed26bf15a91a9be4a336e0d43c0e0c5a07fa777fe5a47f19a0",
    "SDNet4/encoder_s4_lv1.pkl": "c99b84bd6ba701417bafd7e4307525930847eb9a78f9e3eb820514cc6589708b",
    "SDNet4/encoder_s4_lv2.pkl": "4ae847b3d116b60d2e02129df57252a1d31751ec359fc498f24ef481eda49fa4",
    "SDNet4/encoder_s4_lv3.pkl": "9cef6d621cdb977a622bbc8813ef4b7a038761975800bf3422ec11cd6a6e41ad",
}


def _dmphn_files(folder: str) -> tuple[UpstreamFile, ...]:
    return tuple(UpstreamFile(f"dmphn/{rel}", sha, f"{_DMPHN_RAW}/{rel}")
                 for rel, sha in sorted(_DMPHN_SHA.items()) if rel.startswith(folder + "/"))


def _dmphn_network(name: str, module, multiple: int):
    def make(variables) -> Network:
        return Network(module=module, variables=variables, kind="image", channels=3,
                       multiple=multiple, name=name)
    return make


register(WeightSpec(
    name="dmphn-1-2-4",
    files=_dmphn_files("DMPHN_1_2_4"),
    convert=dmphn_from_files,
    network=_dmphn_network("dmphn-1-2-4", DMPHN(levels=3), network_multiple(3)),
    description="DMPHN 1-2-4 deblurring (GoPro), colour, image in [0, 1] -> deblurred image; "
                "sizes padded to a multiple of 8",
    source=_DMPHN_SOURCE.format(folder="DMPHN_1_2_4", script="DMPHN_1_2_4_test.py"),
    licence=_DMPHN_LICENCE, converter_needs_torch=True))

register(WeightSpec(
    name="dmphn-1-2-4-8",
    files=_dmphn_files("DMPHN_1_2_4_8"),
    convert=dmphn_from_files,
    network=_dmphn_network("dmphn-1-2-4-8", DMPHN(levels=4), network_multiple(4)),
    description="DMPHN 1-2-4-8 deblurring (GoPro), colour; sizes padded to a multiple of 16",
    source=_DMPHN_SOURCE.format(folder="DMPHN_1_2_4_8", script="DMPHN_1_2_4_8_test.py"),
    licence=_DMPHN_LICENCE, converter_needs_torch=True))

register(WeightSpec(
    name="stack4-dmphn",
    files=_dmphn_files("SDNet4"),
    convert=dmphn_from_files,
    network=_dmphn_network("stack4-dmphn", StackDMPHN(stacks=4), network_multiple(3)),
    description="Stack(4)-DMPHN (SDNet4: 4 stacks of 1-2-4) deblurring (GoPro), colour; sizes "
                "padded to a multiple of 8",
    source=_DMPHN_SOURCE.format(folder="SDNet4", script="SDNet4_test.py"),
    licence=_DMPHN_LICENCE, converter_needs_torch=True))

from . import registry_vdn  # noqa: F401,E402  (VDN entries)
