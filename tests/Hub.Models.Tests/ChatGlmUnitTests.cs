using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Hub.Converters;
using Hub.IR;
using Hub.Models.ChatGlm;
using Hub.Tests;
using Hub.Weights;

namespace Hub.Models.Tests;

/// <summary>A float32 checkpoint in native memory, for weight-hook tests that need exact, known values.</summary>
internal sealed unsafe class ChatGlmMemorySource : ITensorSource
{
    private readonly Dictionary<string, (nint Ptr, Shape Shape)> _t = new(StringComparer.Ordinal);
    public string Location => "memory.bin";
    public IReadOnlyCollection<string> Names => _t.Keys;

    public void Add(string name, float[] data, params long[] shape)
    {
        var p = (nint)NativeMemory.Alloc((nuint)(data.Length * 4));
        data.AsSpan().CopyTo(new Span<float>((void*)p, data.Length));
        _t[name] = (p, new Shape(shape));
    }

    public void AddSeq(string name, params long[] shape)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        Add(name, Enumerable.Range(0, (int)n).Select(i => (float)i).ToArray(), shape);
    }

    public bool TryGetInfo(string name, out TensorInfo info)
    {
        if (_t.TryGetValue(name, out var t)) { info = new TensorInfo(name, DType.F32, t.Shape, Location); return true; }
        info = null!;
        return false;
    }

    public TensorView Open(string name) { var t = _t[name]; return new TensorView(DType.F32, t.Shape, t.Ptr, t.Shape.ElementCount * 4); }

    public void Dispose() { foreach (var t in _t.Values) NativeMemory.Free((void*)t.Ptr); _t.Clear(); }
}

/// <summary>Config parsing, weight hooks, graph structure, positions and bad input, without executing a graph.</summary>
public sealed class ChatGlmUnitTests
{
    // parsed from text, as config.json always is (ConfigReader reads parsed JSON numbers)
    private static JsonObject Parsed(JsonObject o) => JsonNode.Parse(o.ToJsonString())!.AsObject();

    private static JsonObject V2Config(int heads = 4, int groups = 2, int kv = 16) => Parsed(new()
    {
        ["model_type"] = "chatglm", ["architectures"] = new JsonArray("ChatGLMModel"),
        ["hidden_size"] = 64, ["num_layers"] = 1, ["num_attention_heads"] = heads, ["kv_channels"] = kv,
        ["multi_query_attention"] = true, ["multi_query_group_num"] = groups, ["ffn_hidden_size"] = 40,
        ["padded_vocab_size"] = 32, ["seq_length"] = 64, ["add_qkv_bias"] = true, ["rmsnorm"] = true, ["post_layer_norm"] = true,
    });

    private static JsonObject V1Config() => Parsed(new()
    {
        ["model_type"] = "chatglm", ["hidden_size"] = 16, ["num_layers"] = 1, ["num_attention_heads"] = 2,
        ["inner_hidden_size"] = 24, ["vocab_size"] = 32, ["max_sequence_length"] = 64, ["position_encoding_2d"] = true,
        ["mask_token_id"] = 20, ["gmask_token_id"] = 21, ["bos_token_id"] = 24, ["eos_token_id"] = 25, ["pad_token_id"] = 3,
    });

    private static ChatGlmMemorySource V2Weights(long qkvRows = 128)
    {
        var s = new ChatGlmMemorySource();
        s.AddSeq("transformer.embedding.word_embeddings.weight", 32, 64);
        s.AddSeq("transformer.encoder.layers.0.input_layernorm.weight", 64);
        s.AddSeq("transformer.encoder.layers.0.self_attention.query_key_value.weight", qkvRows, 64);
        s.AddSeq("transformer.encoder.layers.0.self_attention.query_key_value.bias", qkvRows);
        s.AddSeq("transformer.encoder.layers.0.self_attention.dense.weight", 64, 64);
        s.AddSeq("transformer.encoder.layers.0.post_attention_layernorm.weight", 64);
        s.AddSeq("transformer.encoder.layers.0.mlp.dense_h_to_4h.weight", 80, 64);
        s.AddSeq("transformer.encoder.layers.0.mlp.dense_4h_to_h.weight", 64, 40);
        s.AddSeq("transformer.encoder.final_layernorm.weight", 64);
        s.AddSeq("transformer.output_layer.weight", 32, 64);
        s.AddSeq("transformer.rotary_pos_emb.inv_freq", 4);
        return s;
    }

    private static ModelExport Build(JsonObject config, ITensorSource weights, ChatGlmArchitecture? arch = null) =>
        (arch ?? new ChatGlmArchitecture()).Build(new ModelSource { Directory = ".", Config = config, ConfigPath = "config.json", Weights = weights }, ExportSettings.Default);

    [Fact]
    public void Registry_resolves_chatglm_and_tells_v1_from_v2()
    {
        Assert.IsType<ChatGlmArchitecture>(ModelRegistry.Resolve(V2Config(), "config.json"));
        Assert.IsType<ChatGlmArchitecture>(ModelRegistry.Resolve(V1Config(), "config.json"));
        Assert.Equal(ChatGlmVariant.V2, ChatGlmConfig.Parse(V2Config(), "config.json").Variant);
        Assert.Equal(ChatGlmVariant.V1, ChatGlmConfig.Parse(V1Config(), "config.json").Variant);
        var noMarkers = V1Config(); noMarkers.Remove("position_encoding_2d"); noMarkers.Remove("inner_hidden_size");
        Assert.Equal(ChatGlmVariant.V1, ChatGlmConfig.Parse(noMarkers, "config.json").Variant);   // no padded_vocab_size
    }

    [Fact]
    public void V2_graph_caches_only_the_kv_groups_and_rotates_the_first_half_of_each_head_in_interleaved_pairs()
    {
        using var w = V2Weights();
        var export = Build(V2Config(), w);
        var g = export.Graph;
        var key = g.States.Single(s => s.Name == "past.0.key");
        Assert.Equal(new Dim[] { "batch", 2, "ctx", 16 }, key.Shape);
        var att = g.Nodes.Single(n => n.Op == Ops.Attention);
        Assert.Equal(4, att.GetInt("heads"));
        Assert.Equal(2, att.GetInt("kv_heads"));
        Assert.Equal(0.25f, att.GetFloat("scale"));
        var ropes = g.Nodes.Where(n => n.Op == Ops.Rope).ToList();
        Assert.Equal(new long[] { 4, 2 }, ropes.Select(r => r.GetInt("heads")));
        Assert.All(ropes, r => { Assert.Equal(8, r.GetInt("rotary_dims")); Assert.Equal("interleaved", r.GetString("style")); Assert.Equal(10000f, r.GetFloat("theta")); });
        Assert.Equal(new long[] { 64, 32, 32 }, g.Nodes.Single(n => n.Op == Ops.Split).GetInts("sizes"));
        Assert.Equal("linear", (string?)g.Metadata["positions"]);
        Assert.Equal(32, (int)g.Metadata["vocab_size"]!);
        Assert.DoesNotContain(export.Weights, x => x.Name.Contains("inv_freq", StringComparison.Ordinal));
        Assert.Contains(g.Nodes, n => n.Op == Ops.KeepLast);
        Assert.Equal(new[] { "input_ids", "position_ids", "attention_mask", "logits_to_keep" }, g.Inputs.Select(i => i.Name));
    }

    [Fact]
    public void Thudm_prequantized_and_prefix_tuned_configs_are_rejected_with_the_field_named()
    {
        var q = V2Config(); q["quantization_bit"] = 4;
        Assert.Contains("quantization_bit", Assert.Throws<UnsupportedModelException>(() => ChatGlmConfig.Parse(Parsed(q), "config.json")).Message);
        var p = V2Config(); p["pre_seq_len"] = 128;
        Assert.Contains("pre_seq_len", Assert.Throws<UnsupportedModelException>(() => ChatGlmConfig.Parse(Parsed(p), "config.json")).Message);
        var g = V2Config(); g["multi_query_group_num"] = 3;
        Assert.Equal("multi_query_group_num", Assert.Throws<ConfigException>(() => ChatGlmConfig.Parse(Parsed(g), "config.json")).Field);
    }

    [Fact]
    public void Rope_ratio_scales_the_base_by_default_and_divides_positions_when_asked()
    {
        using var w = V2Weights();
        var raw = V2Config(); raw["rope_ratio"] = 50; var cfg = Parsed(raw);
        var rope = Build(cfg, w).Graph.Nodes.First(n => n.Op == Ops.Rope);
        Assert.Equal(500000f, rope.GetFloat("theta"));
        Assert.Equal(1f, rope.GetFloat("position_scale", 1f));
        var interp = Build(cfg, w, new ChatGlmArchitecture(ChatGlmRopeRatioMode.DividePositions)).Graph.Nodes.First(n => n.Op == Ops.Rope);
        Assert.Equal(10000f, interp.GetFloat("theta"));
        Assert.Equal(1f / 50, interp.GetFloat("position_scale"));
    }

    [Fact]
    public void Qkv_weight_whose_size_disagrees_with_heads_groups_kv_channels_throws_naming_file_tensor_and_implied_shape()
    {
        using var w = V2Weights(qkvRows: 96);   // e.g. a checkpoint with 1 group under a config with 2
        var e = Assert.Throws<CheckpointFormatException>(() => Build(V2Config(), w));
        Assert.Equal("memory.bin", e.FilePath);
        Assert.Equal("transformer.encoder.layers.0.self_attention.query_key_value.weight", e.TensorName);
        Assert.Contains("[128, 64]", e.Message);
        Assert.Contains("multi_query_group_num", e.Message);
    }

    [Fact]
    public void Per_head_qkv_rows_are_regrouped_into_all_q_then_all_k_then_all_v()
    {
        // 2 heads, hd 2, 1 column: per-head rows [q0 q0 k0 k0 v0 v0 q1 q1 k1 k1 v1 v1] = 0..11
        using var s = new ChatGlmMemorySource();
        s.AddSeq("w", 12, 1);
        var src = new WeightBinder(s).Get("w");
        var r = ChatGlmWeights.GroupPerHeadRows(src, heads: 2, headDim: 2).ToFloat32();
        Assert.Equal(new float[] { 0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11 }, r);
    }

    [Fact]
    public void V1_graph_uses_2d_half_rope_with_f16_frequencies_prefix_mask_and_alpha_residuals()
    {
        using var s = new ChatGlmMemorySource();
        s.AddSeq("transformer.word_embeddings.weight", 32, 16);
        foreach (var n in new[] { "input_layernorm", "post_attention_layernorm" }) { s.AddSeq($"transformer.layers.0.{n}.weight", 16); s.AddSeq($"transformer.layers.0.{n}.bias", 16); }
        s.AddSeq("transformer.layers.0.attention.query_key_value.weight", 48, 16);
        s.AddSeq("transformer.layers.0.attention.query_key_value.bias", 48);
        s.AddSeq("transformer.layers.0.attention.dense.weight", 16, 16);
        s.AddSeq("transformer.layers.0.attention.dense.bias", 16);
        s.AddSeq("transformer.layers.0.mlp.dense_h_to_4h.weight", 24, 16);
        s.AddSeq("transformer.layers.0.mlp.dense_h_to_4h.bias", 24);
        s.AddSeq("transformer.layers.0.mlp.dense_4h_to_h.weight", 16, 24);
        s.AddSeq("transformer.layers.0.mlp.dense_4h_to_h.bias", 16);
        s.AddSeq("transformer.final_layernorm.weight", 16);
        s.AddSeq("transformer.final_layernorm.bias", 16);
        s.AddSeq("lm_head.weight", 32, 16);
        var export = Build(V1Config(), s);
        var g = export.Graph;
        Assert.Equal("chatglm1", (string?)g.Metadata["positions"]);
        Assert.Equal(new Dim[] { "batch", 2, "seq" }, g.Inputs.Single(i => i.Name == "position_ids").Shape);
        var ropes = g.Nodes.Where(n => n.Op == Ops.Rope).ToList();
        Assert.Equal(4, ropes.Count);
        Assert.All(ropes, r => { Assert.Equal("half", r.GetString("style")); Assert.Equal(4, r.GetInt("rotary_dims")); Assert.Equal("f16", r.GetString("freq_dtype")); });
        Assert.Equal(new long[] { 0, 4, 0, 4 }, ropes.Select(r => r.GetInt("channel_offset")));
        Assert.Equal(new long[] { 0, 1, 0, 1 }, ropes.Select(r => r.GetInt("positions_offset")));
        var att = g.Nodes.Single(n => n.Op == Ops.Attention);
        Assert.True(att.GetBool("prefix_bidirectional"));
        Assert.Equal(ChatGlm1Graph.PrefixLengthInput, att.Inputs[3]);
        Assert.Equal(ChatGlm1Graph.AttentionMaskInput, att.Inputs[4]);   // left padding, next to the prefix lengths
        Assert.All(g.Nodes.Where(n => n.Op == Ops.Scale), n => Assert.Equal((float)Math.Sqrt(56), n.GetFloat("alpha")));
        // the fused qkv is regrouped: first rows of the IR weight are head 0's q, then head 1's q
        var qkv = export.Weights.Single(x => x.Name == "transformer.layers.0.attention.query_key_value.weight").Tensor.ToFloat32();
        Assert.Equal(0f, qkv[0]);
        Assert.Equal(24f * 16, qkv[8 * 16]);   // head 1's q starts at old row 3·hd = 24
    }

    [Fact]
    public void ChatGlm1Positions_follow_thudm_for_prompt_and_decode_steps()
    {
        var tok = new ChatGlm1SpecialTokens(Mask: 500, GMask: 501, Bos: 504);
        int[] ids = { 7, 8, 9, 501, 504 };
        var pos = new int[10];
        var prefix = new int[1];
        var layouts = ChatGlm1Positions.ForPrompt(ids, 1, 5, tok, pos, prefix);
        Assert.Equal(new[] { 0, 1, 2, 3, 3, /* block */ 0, 0, 0, 0, 1 }, pos);
        Assert.Equal(4, prefix[0]);
        Assert.Equal(new ChatGlm1Layout(4, 3), layouts[0]);
        var step = new int[2];
        ChatGlm1Positions.ForStep(layouts, past: 5, seqLen: 1, step, prefix);
        Assert.Equal(new[] { 3, 2 }, step);   // position stays at [gMASK], block position counts on
        ChatGlm1Positions.ForStep(layouts, past: 6, seqLen: 1, step, prefix);
        Assert.Equal(new[] { 3, 3 }, step);
        // [MASK] is used only when there is no [gMASK]
        Assert.Equal(1, ChatGlm1Positions.Analyze(new[] { 7, 500, 8, 504 }, tok).MaskPosition);
        Assert.Equal(2, ChatGlm1Positions.Analyze(new[] { 500, 7, 501, 504 }, tok).MaskPosition);
    }

    [Fact]
    public void ChatGlm1Positions_of_a_left_padded_row_are_its_unpadded_positions_shifted_past_the_pads()
    {
        // THUDM's v1 tokenizer pads position_ids with zeros on the left; the prefix (context) length counts the pads.
        var tok = new ChatGlm1SpecialTokens(Mask: 500, GMask: 501, Bos: 504);
        int[] ids = { 3, 3, 7, 8, 9, 501, 504,   /* row 1, unpadded: */ 6, 6, 7, 8, 9, 501, 504 };
        var pos = new int[2 * 2 * 7];
        var prefix = new int[2];
        var layouts = ChatGlm1Positions.ForPrompt(ids, 2, 7, new[] { 2, 0 }, tok, pos, prefix);
        Assert.Equal(new[] { 0, 0, 0, 1, 2, 3, 3, /* block */ 0, 0, 0, 0, 0, 0, 1 }, pos[..14]);
        Assert.Equal(new[] { 0, 1, 2, 3, 4, 5, 5, /* block */ 0, 0, 0, 0, 0, 0, 1 }, pos[14..]);
        Assert.Equal(new[] { 6, 6 }, prefix);
        Assert.Equal(new ChatGlm1Layout(4, 3), layouts[0]);   // the layout of the unpadded ids
        var step = new int[4];
        ChatGlm1Positions.ForStep(layouts, new[] { 2, 0 }, past: 7, seqLen: 1, step, prefix);
        Assert.Equal(new[] { 3, 2, 5, 2 }, step);            // as the unpadded row at past 5
        Assert.Equal(new[] { 6, 6 }, prefix);
        Assert.Throws<ArgumentOutOfRangeException>(() => ChatGlm1Positions.ForPrompt(ids, 2, 7, new[] { 7, 0 }, tok, pos, prefix));
        Assert.Throws<ArgumentException>(() => ChatGlm1Positions.ForPrompt(ids, 2, 7, new[] { 1 }, tok, pos, prefix));
    }

    [Fact]
    public void ChatGlm1Positions_reject_prompts_without_sop_or_mask_token()
    {
        var tok = new ChatGlm1SpecialTokens(500, 501, 504);
        Assert.Contains("<sop>", Assert.Throws<ModelInputException>(() => ChatGlm1Positions.Analyze(new[] { 1, 2, 501 }, tok)).Message);
        Assert.Contains("[gMASK]", Assert.Throws<ModelInputException>(() => ChatGlm1Positions.Analyze(new[] { 1, 2, 504 }, tok)).Message);
    }

    [SkippableFact]
    public void ChatGlm1Positions_match_golden_context_length_and_mask_position()
    {
        using var fx = ChatGlmFixture.Open("chatglm1-tiny");
        var tok = ChatGlm1SpecialTokens.FromMetadata(fx.Export.Graph.Metadata);
        foreach (var c in fx.Cases())
        {
            var l = ChatGlm1Positions.Analyze(c.Ids[0], tok);
            Assert.Equal(c.Raw.GetProperty("context_length").GetInt32(), l.ContextLength);
            Assert.Equal(c.Raw.GetProperty("mask_position").GetInt32(), l.MaskPosition);
        }
    }

    private static string CopyFixture(string name)
    {
        var src = SharedDir.Require($"fixtures/{name}");
        var dst = SharedDir.TempDir("chatglm");
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
        foreach (var f in Directory.GetFiles(dst)) File.SetAttributes(f, FileAttributes.Normal);
        return dst;
    }

    private static ModelExport ExportFolder(string dir)
    {
        var cfgPath = Path.Combine(dir, "config.json");
        using var weights = CheckpointLoader.OpenFolder(dir);
        var src = new ModelSource { Directory = dir, Config = ConfigReader.Load(cfgPath), ConfigPath = cfgPath, Weights = weights };
        return ModelRegistry.Resolve(src.Config, cfgPath).Build(src, ExportSettings.Default);
    }

    [SkippableFact]
    public void Missing_shard_throws_naming_the_index_and_the_shard()
    {
        var dir = CopyFixture("chatglm2-tiny");
        try
        {
            File.Delete(Path.Combine(dir, "pytorch_model-00002-of-00002.bin"));
            var e = Assert.Throws<CheckpointFormatException>(() => ExportFolder(dir));
            Assert.EndsWith("pytorch_model.bin.index.json", e.FilePath);
            Assert.Contains("pytorch_model-00002-of-00002.bin", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void Tensor_absent_from_the_index_throws_naming_the_tensor()
    {
        var dir = CopyFixture("chatglm2-tiny");
        try
        {
            var indexPath = Path.Combine(dir, "pytorch_model.bin.index.json");
            var index = JsonNode.Parse(File.ReadAllText(indexPath))!.AsObject();
            index["weight_map"]!.AsObject().Remove("transformer.encoder.layers.1.mlp.dense_4h_to_h.weight");
            File.WriteAllText(indexPath, index.ToJsonString());
            var e = Assert.Throws<CheckpointFormatException>(() => ExportFolder(dir));
            Assert.Equal("transformer.encoder.layers.1.mlp.dense_4h_to_h.weight", e.TensorName);
            Assert.EndsWith("pytorch_model.bin.index.json", e.FilePath);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void Fixture_qkv_weight_disagreeing_with_config_groups_throws_naming_the_shard_and_tensor()
    {
        var dir = CopyFixture("chatglm2-tiny");
        try
        {
            var cfgPath = Path.Combine(dir, "config.json");
            var cfg = JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();
            cfg["multi_query_group_num"] = 1;
            File.WriteAllText(cfgPath, cfg.ToJsonString());
            var e = Assert.Throws<CheckpointFormatException>(() => ExportFolder(dir));
            Assert.Equal("transformer.encoder.layers.0.self_attention.query_key_value.weight", e.TensorName);
            Assert.Contains("pytorch_model-0000", e.FilePath);
            Assert.Contains("[96, 64]", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
