using Hub.IR;
using Hub.Models.Llama;

namespace Hub.Models.Tests;

public class LlamaGraphTests
{
    private static ModelExport Build(System.Text.Json.Nodes.JsonObject cfg, LlamaMemorySource src, WeightLayout layout = WeightLayout.HuggingFace) =>
        new LlamaArchitecture().Build(new ModelSource { Directory = "memory", Config = cfg, ConfigPath = "memory/config.json", Weights = src, Layout = layout }, ExportSettings.Default);

    [Fact]
    public void Graph_follows_the_causal_lm_conventions()
    {
        var cfg = LlamaMemorySource.TinyConfig();
        using var src = LlamaMemorySource.RandomLlama(cfg, 1);
        var g = Build(cfg, src).Graph;
        Assert.Equal(["input_ids", "position_ids", "attention_mask", "logits_to_keep"], g.Inputs.Select(i => i.Name));
        Assert.Equal("logits", Assert.Single(g.Outputs).Name);
        Assert.Equal(["past.0.key", "past.0.value", "past.1.key", "past.1.value"], g.States.Select(s => s.Name));
        Assert.Equal("batch,2,ctx,8", string.Join(",", g.States[0].Shape));
        Assert.Equal("causal_lm", (string?)g.Metadata["task"]);
        Assert.Equal(99, (int)g.Metadata["vocab_size"]!);
        Assert.Equal(64, (int)g.Metadata["max_position_embeddings"]!);
        Assert.Equal("linear", (string?)g.Metadata["positions"]);
        Assert.Equal("[2,3]", g.Metadata["eos_token_id"]!.ToJsonString());
        var att = g.Nodes.Single(n => n.Name == "model.layers.1.self_attn.attention");
        Assert.Equal((4L, 2L, 8L, true, "past.1.key", "past.1.value"),
            (att.GetInt("heads"), att.GetInt("kv_heads"), att.GetInt("head_dim"), att.GetBool("causal"), att.GetString("state_k"), att.GetString("state_v")));
        var rope = g.Nodes.Single(n => n.Name == "model.layers.0.self_attn.rope_k");
        Assert.Equal(("half", 2L, 8L, 10000f), (rope.GetString("style"), rope.GetInt("heads"), rope.GetInt("rotary_dims"), rope.GetFloat("theta")));
        Assert.Equal(Ops.KeepLast, g.Nodes[^2].Op);
    }

    [Fact]
    public void Fused_qkv_and_gate_up_weights_concatenate_rows_in_order()
    {
        var cfg = LlamaMemorySource.TinyConfig(biases: true);
        using var src = LlamaMemorySource.RandomLlama(cfg, 2);
        var w = Build(cfg, src).Weights.ToDictionary(x => x.Name);
        var qkv = w["model.layers.0.self_attn.qkv_proj.weight"].Tensor;
        Assert.Equal(new Shape(32 + 16 + 16, 32), qkv.Shape);
        var expected = src.Data("model.layers.0.self_attn.q_proj.weight").Concat(src.Data("model.layers.0.self_attn.k_proj.weight")).Concat(src.Data("model.layers.0.self_attn.v_proj.weight"));
        Assert.Equal(expected, qkv.ToFloat32());
        var qkvB = w["model.layers.0.self_attn.qkv_proj.bias"].Tensor.ToFloat32();
        Assert.Equal(src.Data("model.layers.0.self_attn.q_proj.bias").Concat(src.Data("model.layers.0.self_attn.k_proj.bias")).Concat(src.Data("model.layers.0.self_attn.v_proj.bias")), qkvB);
        var gu = w["model.layers.1.mlp.gate_up_proj.weight"].Tensor;
        Assert.Equal(new Shape(74, 32), gu.Shape);
        Assert.Equal(src.Data("model.layers.1.mlp.gate_proj.weight").Concat(src.Data("model.layers.1.mlp.up_proj.weight")), gu.ToFloat32());
        Assert.Contains("model.layers.1.self_attn.o_proj.bias", w.Keys);
        Assert.Contains("model.layers.1.mlp.down_proj.bias", w.Keys);
    }

    [Fact]
    public void Tied_head_reads_the_embedding_weight()
    {
        var cfg = LlamaMemorySource.TinyConfig(tied: true);
        using var src = LlamaMemorySource.RandomLlama(cfg, 3);
        var ex = Build(cfg, src);
        Assert.DoesNotContain(ex.Weights, w => w.Name == "lm_head.weight");
        Assert.Equal("model.embed_tokens.weight", ex.Graph.Nodes.Single(n => n.Name == "logits").Inputs[1]);
    }

    [Fact]
    public void Untied_head_without_lm_head_weight_throws_naming_the_tensor()
    {
        var cfg = LlamaMemorySource.TinyConfig(tied: true);
        using var src = LlamaMemorySource.RandomLlama(cfg, 4);
        cfg["tie_word_embeddings"] = false;
        var e = Assert.Throws<CheckpointFormatException>(() => Build(cfg, src));
        Assert.Equal("lm_head.weight", e.TensorName);
    }

    [Fact]
    public void Weight_shape_disagreeing_with_config_throws_naming_the_tensor()
    {
        var cfg = LlamaMemorySource.TinyConfig();
        using var src = LlamaMemorySource.RandomLlama(cfg, 5);
        cfg["intermediate_size"] = 40;
        var e = Assert.Throws<CheckpointFormatException>(() => Build(cfg, src));
        Assert.Equal("model.layers.0.mlp.gate_proj.weight", e.TensorName);
    }

    [Fact]
    public void Sequence_classification_architecture_is_refused()
    {
        var cfg = LlamaMemorySource.TinyConfig();
        using var src = LlamaMemorySource.RandomLlama(cfg, 6);
        cfg["architectures"] = new System.Text.Json.Nodes.JsonArray("LlamaForSequenceClassification");
        Assert.Throws<UnsupportedModelException>(() => Build(cfg, src));
    }

    [Fact]
    public void Interleaved_layout_permutes_q_and_k_rows_only()
    {
        var cfg = LlamaMemorySource.TinyConfig();
        using var src = LlamaMemorySource.RandomLlama(cfg, 7);
        var hf = Build(cfg, src).Weights.ToDictionary(x => x.Name, x => x.Tensor.ToFloat32());
        var il = Build(cfg, src, WeightLayout.InterleavedRope).Weights.ToDictionary(x => x.Name, x => x.Tensor.ToFloat32());
        foreach (var name in hf.Keys.Where(n => !n.Contains("qkv_proj")))
            Assert.Equal(hf[name], il[name]);
        var q = src.Data("model.layers.0.self_attn.q_proj.weight");
        // Row 1 of head 0 in HF order is row 2 of the interleaved order (pair j=1, c=0); row 4 (c=1, j=0) is row 1.
        Assert.Equal(q.AsSpan(2 * 32, 32).ToArray(), il["model.layers.0.self_attn.qkv_proj.weight"].AsSpan(1 * 32, 32).ToArray());
        Assert.Equal(q.AsSpan(1 * 32, 32).ToArray(), il["model.layers.0.self_attn.qkv_proj.weight"].AsSpan(4 * 32, 32).ToArray());
        // v rows (after q 32 and k 16 rows) are untouched.
        Assert.Equal(hf["model.layers.0.self_attn.qkv_proj.weight"].AsSpan(48 * 32).ToArray(), il["model.layers.0.self_attn.qkv_proj.weight"].AsSpan(48 * 32).ToArray());
    }
}
