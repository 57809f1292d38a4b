using System.Text.Json.Nodes;
using Hub.Converters;
using Hub.IR;
using Hub.Models.Bert;
using Hub.Tests;
using Hub.Weights;

namespace Hub.Models.Tests;

public sealed class BertModelTests
{
    private const string TinyCls = "fixtures/bert-tiny-cls";
    private const string MiniLm = "models/sentence-transformers/all-MiniLM-L6-v2";

    internal static ModelExport Export(string dir)
    {
        var configPath = Path.Combine(dir, "config.json");
        var config = ConfigReader.Load(configPath);
        var source = CheckpointLoader.OpenFolder(dir);
        var arch = ModelRegistry.Resolve(config, configPath);
        Assert.IsType<BertArchitecture>(arch);
        return arch.Build(new ModelSource { Directory = dir, Config = config, ConfigPath = configPath, Weights = source }, ExportSettings.Default);
    }

    [SkippableFact]
    public void Tiny_classifier_logits_probs_and_pooler_match_golden_including_padded_batch()
    {
        var dir = SharedDir.Require(TinyCls);
        var export = Export(dir);
        Assert.Equal("sequence_classification", (string?)export.Graph.Metadata["task"]);
        Assert.Equal("positive", (string?)export.Graph.Metadata["id2label"]!["2"]);
        var golden = BertGolden.Load(Path.Combine(dir, "golden.json"));
        foreach (var c in golden["cases"]!.AsArray())
        {
            var outs = BertRunner.Run(export, BertGolden.Inputs(c!));
            var logits = outs["logits"].Data;
            Assert.True(BertGolden.MaxAbsDiff(logits, BertGolden.Flat(c!["logits"]!)) < 1e-4);
            var probs = BertOutputs.Softmax(logits, 3);
            Assert.True(BertGolden.MaxAbsDiff(probs, BertGolden.Flat(c["probs"]!)) < 1e-4);
            Assert.True(BertGolden.MaxAbsDiff(outs["pooler_output"].Data, BertGolden.Flat(c["pooler_output"]!)) < 1e-4);
        }
    }

    [SkippableFact]
    public void Runtime_agrees_with_the_reference_interpreter_on_every_output()
    {
        var dir = SharedDir.Require(TinyCls);
        var export = Export(dir);
        var inputs = BertGolden.Inputs(BertGolden.Load(Path.Combine(dir, "golden.json"))["cases"]![1]!);
        var fast = BertRunner.Run(export, inputs);
        var reference = ReferenceExecutor.Run(export, inputs);
        foreach (var name in new[] { "last_hidden_state", "pooler_output", "logits" })
            Assert.True(BertGolden.MaxAbsDiff(fast[name].Data, reference[name].Data) < 1e-5, name);
    }

    [SkippableFact]
    public void MiniLm_hidden_states_and_sentence_embeddings_match_onnx_runtime_for_every_case()
    {
        var dir = SharedDir.Require(MiniLm);
        var export = Export(dir);
        Assert.Equal("text_encoder", (string?)export.Graph.Metadata["task"]);
        var pipeline = SentenceEmbeddingConfig.Load(dir);
        Assert.Equal([PoolingMode.Mean], pipeline.Pooling);
        Assert.True(pipeline.Normalize);
        Assert.Equal(256, pipeline.MaxSeqLength);
        var golden = BertGolden.Load(Path.Combine(dir, "golden.json"));
        foreach (var c in golden["cases"]!.AsArray())
        {
            var inputs = BertGolden.Inputs(c!);
            var outs = BertRunner.Run(export, inputs);
            var h = outs["last_hidden_state"].Data;
            var name = (string?)c!["name"];
            var diff = BertGolden.MaxAbsDiff(h, BertGolden.Flat(c["last_hidden_state"]!));
            Assert.True(diff < 1e-4, $"{name}: last_hidden_state differs by {diff}");
            Assert.True(BertGolden.MaxAbsDiff(outs["pooler_output"].Data, BertGolden.Flat(c["pooler_output"]!)) < 1e-4, $"{name}: pooler");
            var mask = inputs["attention_mask"];
            var emb = pipeline.Pool(h, mask.Data, mask.Shape[0], mask.Shape[1], 384);
            var want = BertGolden.Flat(c["sentence_embedding"]!);
            for (int b = 0; b < mask.Shape[0]; b++)
            {
                var cos = BertOutputs.Cosine(emb[b], want.AsSpan(b * 384, 384));
                Assert.True(cos >= 0.99999, $"{name}[{b}]: cosine {cos}");
            }
        }
    }

    [SkippableFact]
    public void Pruned_heads_model_equals_unpruned_model_with_those_heads_zeroed_in_output_projection()
    {
        var dir = SharedDir.Require(TinyCls);
        var pruned = new Dictionary<int, int[]> { [0] = [1, 3], [1] = [2] };
        var tmp = SharedDir.TempDir("bert-pruned");
        var zeroed = SharedDir.TempDir("bert-zeroed");
        try
        {
            BertPruning.WritePruned(dir, tmp, pruned);
            BertPruning.WriteZeroed(dir, zeroed, pruned);
            var a = Export(tmp);
            var b = Export(zeroed);
            Assert.Equal(2 * 8 * 3, a.Weights.Single(w => w.Name == "bert.encoder.layer.0.attention.self.qkv.weight").Tensor.Shape[0]);
            var original = Export(dir);
            var golden = BertGolden.Load(Path.Combine(dir, "golden.json"));
            foreach (var c in golden["cases"]!.AsArray())
            {
                var inputs = BertGolden.Inputs(c!);
                var oa = BertRunner.Run(a, inputs);
                var ob = BertRunner.Run(b, inputs);
                Assert.True(BertGolden.MaxAbsDiff(oa["logits"].Data, ob["logits"].Data) < 1e-5);
                Assert.True(BertGolden.MaxAbsDiff(oa["last_hidden_state"].Data, ob["last_hidden_state"].Data) < 1e-4);
                // The heads mattered: pruning them changes the result.
                var oo = BertRunner.Run(original, inputs);
                Assert.True(BertGolden.MaxAbsDiff(oa["last_hidden_state"].Data, oo["last_hidden_state"].Data) > 1e-3);
            }
        }
        finally
        {
            Directory.Delete(tmp, true);
            Directory.Delete(zeroed, true);
        }
    }

    [SkippableFact]
    public void Ffn_pruned_layer_and_layer_with_every_head_pruned_equal_their_zeroed_counterparts()
    {
        var dir = SharedDir.Require(TinyCls);
        var pruned = SharedDir.TempDir("bert-ffn");
        var zeroed = SharedDir.TempDir("bert-ffn-zero");
        try
        {
            int[] neurons = [0, 5, 6, 17, 40, 63];
            BertPruning.WriteEdited(dir, pruned, t => BertPruning.PruneFfn(t, 1, neurons, remove: true));
            BertPruning.WriteEdited(dir, zeroed, t => BertPruning.PruneFfn(t, 1, neurons, remove: false));
            var a = Export(pruned);
            Assert.Equal(64 - neurons.Length, a.Weights.Single(w => w.Name == "bert.encoder.layer.1.intermediate.dense.weight").Tensor.Shape[0]);
            var inputs = BertGolden.Inputs(BertGolden.Load(Path.Combine(dir, "golden.json"))["cases"]![1]!);
            Assert.True(BertGolden.MaxAbsDiff(BertRunner.Run(a, inputs)["logits"].Data, BertRunner.Run(Export(zeroed), inputs)["logits"].Data) < 1e-5);
        }
        finally { Directory.Delete(pruned, true); Directory.Delete(zeroed, true); }

        var all = new Dictionary<int, int[]> { [0] = [0, 1, 2, 3] };
        var noHeads = SharedDir.TempDir("bert-noheads");
        var zeroHeads = SharedDir.TempDir("bert-noheads-zero");
        try
        {
            BertPruning.WritePruned(dir, noHeads, all);
            BertPruning.WriteZeroed(dir, zeroHeads, all);
            var a = Export(noHeads);
            Assert.DoesNotContain(a.Graph.Nodes, n => n.Name == "layer.0.attn");
            var inputs = BertGolden.Inputs(BertGolden.Load(Path.Combine(dir, "golden.json"))["cases"]![1]!);
            Assert.True(BertGolden.MaxAbsDiff(BertRunner.Run(a, inputs)["logits"].Data, BertRunner.Run(Export(zeroHeads), inputs)["logits"].Data) < 1e-5);
        }
        finally { Directory.Delete(noHeads, true); Directory.Delete(zeroHeads, true); }
    }

    [SkippableFact]
    public void Pruned_weights_without_pruned_heads_in_config_throw_naming_the_field()
    {
        var dir = SharedDir.Require(TinyCls);
        var tmp = SharedDir.TempDir("bert-pruned");
        try
        {
            BertPruning.WritePruned(dir, tmp, new Dictionary<int, int[]> { [1] = [0] }, writeConfigField: false);
            var e = Assert.Throws<ConfigException>(() => Export(tmp));
            Assert.Equal("pruned_heads", e.Field);
            Assert.Contains("encoder.layer.1.attention.self.query.weight", e.Message);
        }
        finally { Directory.Delete(tmp, true); }
    }

    [SkippableFact]
    public void Num_labels_disagreeing_with_classifier_weight_throws_naming_field_and_tensor()
    {
        var dir = SharedDir.Require(TinyCls);
        var tmp = SharedDir.TempDir("bert-labels");
        try
        {
            foreach (var f in Directory.GetFiles(dir)) File.Copy(f, Path.Combine(tmp, Path.GetFileName(f)));
            var cfg = ConfigReader.Load(Path.Combine(tmp, "config.json"));
            cfg["id2label"] = new JsonObject { ["0"] = "a", ["1"] = "b" };
            cfg["label2id"] = new JsonObject { ["a"] = 0, ["b"] = 1 };
            File.WriteAllText(Path.Combine(tmp, "config.json"), cfg.ToJsonString());
            var e = Assert.Throws<ConfigException>(() => Export(tmp));
            Assert.Equal("num_labels", e.Field);
            Assert.Contains("classifier.weight", e.Message);
        }
        finally { Directory.Delete(tmp, true); }
    }

    [Fact]
    public void Config_rejects_relative_positions_and_unknown_problem_type()
    {
        // Parsed from text, as configs are read from disk.
        JsonObject Cfg() => JsonNode.Parse("""
            {"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 16}
            """)!.AsObject();
        var rel = Cfg(); rel["position_embedding_type"] = "relative_key";
        Assert.Throws<UnsupportedModelException>(() => BertConfig.Parse(rel, "config.json"));
        var pt = Cfg(); pt["problem_type"] = "ranking";
        Assert.Equal("problem_type", Assert.Throws<ConfigException>(() => BertConfig.Parse(pt, "config.json")).Field);
        var heads = Cfg(); heads["pruned_heads"] = JsonNode.Parse("""{"0": [5]}""");
        Assert.Equal("pruned_heads", Assert.Throws<ConfigException>(() => BertConfig.Parse(heads, "config.json")).Field);
        var one = Cfg(); one["num_labels"] = JsonNode.Parse("1");
        Assert.Equal(BertProblemType.Regression, BertConfig.Parse(one, "config.json").ProblemType);
        var tanh = Cfg(); tanh["hidden_act"] = "gelu_new";
        Assert.Equal("tanh", BertConfig.Parse(tanh, "config.json").GeluApproximate);
    }
}

/// <summary>Host-side math the tests need (softmax, mean pooling, cosine).</summary>
public static class BertOutputs
{
    public static float[] Softmax(float[] logits, int n)
    {
        var r = new float[logits.Length];
        for (int row = 0; row < logits.Length / n; row++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < n; j++) max = Math.Max(max, logits[row * n + j]);
            for (int j = 0; j < n; j++) sum += Math.Exp(logits[row * n + j] - max);
            for (int j = 0; j < n; j++) r[row * n + j] = (float)(Math.Exp(logits[row * n + j] - max) / sum);
        }
        return r;
    }

    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
        return ab / Math.Sqrt(aa * bb);
    }
}

/// <summary>Structural head pruning exactly as transformers' BertAttention.prune_heads does it.</summary>
public static class BertPruning
{
    private const int Heads = 4, HeadDim = 8, Hidden = 32;

    private static Dictionary<string, (float[] Data, long[] Shape)> Read(string dir)
    {
        using var src = CheckpointLoader.OpenFolder(dir);
        return src.Names.ToDictionary(n => n, n => { var v = src.Open(n); return (v.ToFloat32(), v.Shape.ToArray()); });
    }

    private static void CopyAux(string dir, string dst)
    {
        foreach (var f in Directory.GetFiles(dir))
            if (Path.GetFileName(f) is not ("model.safetensors" or "config.json"))
                File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
    }

    /// <summary>Removes the heads: rows of query/key/value (weights and biases), columns of attention.output.dense.</summary>
    public static void WritePruned(string dir, string dst, IReadOnlyDictionary<int, int[]> pruned, bool writeConfigField = true)
    {
        var t = Read(dir);
        foreach (var (layer, heads) in pruned)
        {
            var keep = Enumerable.Range(0, Heads).Except(heads).ToArray();
            var p = $"bert.encoder.layer.{layer}.attention.";
            foreach (var m in new[] { "query", "key", "value" })
            {
                var (w, _) = t[p + $"self.{m}.weight"];
                var (b, _) = t[p + $"self.{m}.bias"];
                t[p + $"self.{m}.weight"] = (keep.SelectMany(h => w.AsSpan(h * HeadDim * Hidden, HeadDim * Hidden).ToArray()).ToArray(), [keep.Length * HeadDim, Hidden]);
                t[p + $"self.{m}.bias"] = (keep.SelectMany(h => b.AsSpan(h * HeadDim, HeadDim).ToArray()).ToArray(), [keep.Length * HeadDim]);
            }
            var (o, _) = t[p + "output.dense.weight"];
            int cols = keep.Length * HeadDim;
            var no = new float[Hidden * cols];
            for (int r = 0; r < Hidden; r++)
                for (int k = 0; k < keep.Length; k++)
                    Array.Copy(o, r * Hidden + keep[k] * HeadDim, no, r * cols + k * HeadDim, HeadDim);
            t[p + "output.dense.weight"] = (no, [Hidden, cols]);
        }
        SafetensorsWriter.WriteF32(Path.Combine(dst, "model.safetensors"), t);
        var cfg = ConfigReader.Load(Path.Combine(dir, "config.json"));
        if (writeConfigField)
        {
            var map = new JsonObject();
            foreach (var (layer, heads) in pruned) map[layer.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonArray(heads.Select(h => (JsonNode)h).ToArray());
            cfg["pruned_heads"] = map;
        }
        File.WriteAllText(Path.Combine(dst, "config.json"), cfg.ToJsonString());
        CopyAux(dir, dst);
    }

    /// <summary>
    /// Removes FFN neurons as structured (movement / block) pruning does: rows of intermediate.dense (weight and bias)
    /// and the matching columns of output.dense; with <paramref name="remove"/> false they are zeroed in output.dense instead.
    /// </summary>
    public static void PruneFfn(Dictionary<string, (float[] Data, long[] Shape)> t, int layer, int[] neurons, bool remove)
    {
        var p = $"bert.encoder.layer.{layer}.";
        var (wi, si) = t[p + "intermediate.dense.weight"];
        var (bi, _) = t[p + "intermediate.dense.bias"];
        var (wo, so) = t[p + "output.dense.weight"];
        int inter = (int)si[0], hidden = (int)si[1];
        if (!remove)
        {
            foreach (var j in neurons) for (int r = 0; r < hidden; r++) wo[r * inter + j] = 0;
            return;
        }
        var keep = Enumerable.Range(0, inter).Except(neurons).ToArray();
        t[p + "intermediate.dense.weight"] = (keep.SelectMany(j => wi.AsSpan(j * hidden, hidden).ToArray()).ToArray(), [keep.Length, hidden]);
        t[p + "intermediate.dense.bias"] = (keep.Select(j => bi[j]).ToArray(), [keep.Length]);
        var no = new float[hidden * keep.Length];
        for (int r = 0; r < hidden; r++)
            for (int k = 0; k < keep.Length; k++) no[r * keep.Length + k] = wo[r * inter + keep[k]];
        t[p + "output.dense.weight"] = (no, [hidden, keep.Length]);
    }

    /// <summary>Applies <paramref name="edit"/> to the fixture's tensors and writes the result with the fixture's other files.</summary>
    public static void WriteEdited(string dir, string dst, Action<Dictionary<string, (float[] Data, long[] Shape)>> edit, Action<JsonObject>? editConfig = null)
    {
        var t = Read(dir);
        edit(t);
        SafetensorsWriter.WriteF32(Path.Combine(dst, "model.safetensors"), t);
        var cfg = ConfigReader.Load(Path.Combine(dir, "config.json"));
        editConfig?.Invoke(cfg);
        File.WriteAllText(Path.Combine(dst, "config.json"), cfg.ToJsonString());
        CopyAux(dir, dst);
    }

    /// <summary>Keeps the full structure but zeroes the pruned heads' columns of attention.output.dense.</summary>
    public static void WriteZeroed(string dir, string dst, IReadOnlyDictionary<int, int[]> pruned)
    {
        var t = Read(dir);
        foreach (var (layer, heads) in pruned)
        {
            var (o, shape) = t[$"bert.encoder.layer.{layer}.attention.output.dense.weight"];
            foreach (var h in heads)
                for (int r = 0; r < Hidden; r++)
                    Array.Clear(o, r * Hidden + h * HeadDim, HeadDim);
        }
        SafetensorsWriter.WriteF32(Path.Combine(dst, "model.safetensors"), t);
        File.Copy(Path.Combine(dir, "config.json"), Path.Combine(dst, "config.json"));
        CopyAux(dir, dst);
    }
}

/// <summary>Runs an exported graph on the CPU runtime (compiled once per call: these graphs are small).</summary>
public static class BertRunner
{
    public static Dictionary<string, BertTensor> Run(ModelExport export, IReadOnlyDictionary<string, BertTensor> inputs)
    {
        using var m = new CompiledBert(export);
        return m.Run(inputs);
    }
}

public sealed class SentenceEmbeddingConfigTests
{
    [Fact]
    public void Pooling_modes_follow_sentence_transformers_math()
    {
        // batch 1, seq 3 (last is padding), dim 2
        float[] h = [1, -2, 3, 4, 100, 100];
        float[] mask = [1, 1, 0];
        var mean = new SentenceEmbeddingConfig { Pooling = [PoolingMode.Mean] }.Pool(h, mask, 1, 3, 2)[0];
        Assert.Equal([2f, 1f], mean);
        var all = new SentenceEmbeddingConfig { Pooling = [PoolingMode.Cls, PoolingMode.Max, PoolingMode.MeanSqrtLen, PoolingMode.LastToken] }.Pool(h, mask, 1, 3, 2)[0];
        Assert.Equal(new[] { 1f, -2f, 3f, 4f, (float)(4 / Math.Sqrt(2)), (float)(2 / Math.Sqrt(2)), 3f, 4f }, all);
        var unit = new SentenceEmbeddingConfig { Pooling = [PoolingMode.Mean], Normalize = true }.Pool(h, mask, 1, 3, 2)[0];
        Assert.Equal(1.0, Math.Sqrt(unit.Sum(x => (double)x * x)), 6);
    }

    [Fact]
    public void Unsupported_module_in_modules_json_throws_naming_it()
    {
        var dir = SharedDir.TempDir("st");
        try
        {
            File.WriteAllText(Path.Combine(dir, "modules.json"), """
                [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                 {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                 {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]
                """);
            Directory.CreateDirectory(Path.Combine(dir, "1_Pooling"));
            File.WriteAllText(Path.Combine(dir, "1_Pooling", "config.json"), """{"pooling_mode_cls_token": true}""");
            var e = Assert.Throws<UnsupportedModelException>(() => SentenceEmbeddingConfig.Load(dir));
            Assert.Contains("Dense", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
