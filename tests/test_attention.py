import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from dragdiff.attention import reference_attention, self_attention_names


def unet_inputs(model, batch, seed=0):
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(batch, 4, 16, 12, generator=generator)
    return latent, model.encode_prompt("a photo").expand(batch, -1, -1)


def test_identical_branches_make_reference_attention_the_identity(tiny_model):
    unet = tiny_model.unet
    latent, text = unet_inputs(tiny_model, 1)
    with torch.no_grad():
        plain = unet(latent, 500, encoder_hidden_states=text).sample
        with reference_attention(unet, (2, 3)) as controlled:
            both = unet(latent.repeat(2, 1, 1, 1), 500, encoder_hidden_states=text.repeat(2, 1, 1)).sample
    assert controlled == 4  # tiny model: 2 attentions × 1 transformer block in each of up_blocks 2 and 3
    assert torch.allclose(both[0], plain[0], atol=1e-5) and torch.allclose(both[1], plain[0], atol=1e-5)


def test_the_reference_branch_is_unchanged_and_the_edited_branch_reads_it(tiny_model):
    unet = tiny_model.unet
    latent, text = unet_inputs(tiny_model, 2)
    with torch.no_grad():
        solo = unet(latent, 500, encoder_hidden_states=text).sample
        with reference_attention(unet, (2, 3)):
            controlled = unet(latent, 500, encoder_hidden_states=text).sample
    assert torch.allclose(controlled[0], solo[0], atol=1e-5)  # the original is computed as without control
    assert not torch.allclose(controlled[1], solo[1], atol=1e-4)  # the edit now attends to the original


def test_processors_are_restored_after_control(tiny_model):
    unet = tiny_model.unet
    before = unet.attn_processors
    with reference_attention(unet, (2, 3)):
        names = set(self_attention_names(unet, (2, 3)))
        assert all(
            type(p).__name__ == "ReferenceAttentionProcessor" for n, p in unet.attn_processors.items() if n in names
        )
        assert all(".attn1." in n and n.startswith(("up_blocks.2.", "up_blocks.3.")) for n in names)
    after = unet.attn_processors
    assert after.keys() == before.keys() and all(after[n] is before[n] for n in before)
    assert all(isinstance(p, AttnProcessor2_0) for p in after.values())
