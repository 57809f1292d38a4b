using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Hub.Converters;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>
/// GPT2ForSequenceClassification against PyTorch numbers no one here wrote: the classifier is gpt2-tiny with a score
/// head made of three rows of the tied embedding wte, so its logits must equal the fixture's golden LM logits at the
/// last real token for those three vocabulary columns, padded or not.
/// </summary>
public sealed class Gpt2ClassifierTests : IDisposable
{
    private static readonly int[] Columns = [5, 17, 42];
    private const int Eos = 50256;
    private readonly string _tmp = SharedDir.TempDir("hub-gpt2cls");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private ModelOptions Options => new() { ExportCacheDir = Path.Combine(_tmp, "cache"), Threads = 2 };

    // gpt2-tiny re-labelled as GPT2ForSequenceClassification with score.weight = wte rows `Columns`.
    private string MakeClassifier(string name, int? padTokenId, int numLabels = 3, int scoreRows = 3, string? problemType = null)
    {
        var src = SharedDir.Require("fixtures/gpt2-tiny");
        var dir = Path.Combine(_tmp, name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(src).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal) && !f.EndsWith("golden.json", StringComparison.Ordinal)))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var tensors = new Dictionary<string, SafetensorsTensor>();
        using (var st = SafetensorsFile.Open(Path.Combine(src, "model.safetensors")))
        {
            foreach (var n in ((Hub.Weights.ITensorSource)st).Names)
            {
                var v = st.OpenTensor(n);
                tensors[n] = new SafetensorsTensor(v.DType, v.Shape, v.Bytes.ToArray());
            }
        }
        var wte = MemoryMarshal.Cast<byte, float>(tensors["transformer.wte.weight"].Data.Span);
        int d = (int)tensors["transformer.wte.weight"].Shape[1];
        var score = new float[scoreRows * d];
        for (int r = 0; r < scoreRows; r++) wte.Slice(Columns[r] * d, d).CopyTo(score.AsSpan(r * d));
        tensors["score.weight"] = new SafetensorsTensor(DType.F32, new Shape(scoreRows, d), MemoryMarshal.AsBytes(score.AsSpan()).ToArray());
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);

        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!.AsObject();
        cfg["architectures"] = new JsonArray("GPT2ForSequenceClassification");
        cfg["num_labels"] = numLabels;
        var labels = new JsonObject();
        for (int i = 0; i < numLabels; i++) labels[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = $"col{(i < Columns.Length ? Columns[i] : i)}";
        cfg["id2label"] = labels;
        if (padTokenId is int pad) cfg["pad_token_id"] = pad;
        if (problemType is not null) cfg["problem_type"] = problemType;
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        return dir;
    }

    // The golden LM logits at the last position of each single-text case, restricted to `Columns`.
    private static (string Text, float[] Want)[] Expected()
    {
        var golden = Golden.Load(Path.Combine(SharedDir.Require("fixtures/gpt2-tiny"), "golden.json"));
        return golden["cases"]!.AsArray().Where(c => c!["text"] is not null).Select(c =>
        {
            var last = Golden.Floats(c!["logits_last"]![0]);
            return ((string)c["text"]!, Columns.Select(i => last[i]).ToArray());
        }).ToArray();
    }

    [SkippableFact]
    public void Logits_equal_golden_lm_logits_at_the_last_token_single_and_padded_left_or_right()
    {
        var dir = MakeClassifier("cls", Eos);
        using var any = Model.FromPretrained(dir, export: true, Options);
        var classifier = Assert.IsType<SequenceClassifier>(any);
        Assert.Equal(["col5", "col17", "col42"], classifier.Labels);
        Assert.Equal("single_label_classification", classifier.ProblemType);
        var cases = Expected();
        Assert.Equal(2, cases.Length);

        foreach (var (text, want) in cases)
            Golden.Close(want, classifier.Classify(text).Logits, 1e-4f, $"single '{text}'");

        // Rows of 6 and 10 tokens: the shorter one is padded with eos on either side.
        var texts = cases.Select(c => c.Text).ToArray();
        foreach (var side in new[] { PaddingSide.Right, PaddingSide.Left })
        {
            classifier.PaddingSide = side;
            var results = classifier.Classify(texts);
            for (int b = 0; b < texts.Length; b++)
            {
                Golden.Close(cases[b].Want, results[b].Logits, 1e-4f, $"{side}-padded row {b}");
                var p = results[b].Probabilities;
                Assert.Equal(1.0, p.Sum(), 5);
                Assert.Equal(Array.IndexOf(p, p.Max()), results[b].LabelId);
                Assert.Equal($"col{Columns[results[b].LabelId]}", results[b].Label);
            }
        }
    }

    [SkippableFact]
    public void Batch_without_pad_token_throws_like_transformers_and_single_text_still_works()
    {
        var dir = MakeClassifier("nopad", padTokenId: null);
        using var classifier = SequenceClassifier.FromPretrained(dir, export: true, Options);
        var cases = Expected();
        var e = Assert.Throws<ModelInputException>(() => classifier.Classify(cases.Select(c => c.Text).ToArray()));
        Assert.Contains("Cannot handle batch sizes > 1 if no padding token is defined", e.Message);
        Assert.Contains("pad_token_id", e.Message);
        Golden.Close(cases[1].Want, classifier.Classify(cases[1].Text).Logits, 1e-4f, "no pad, one text");
    }

    [SkippableFact]
    public void Num_labels_disagreeing_with_score_weight_rows_throws_naming_the_tensor()
    {
        var dir = MakeClassifier("mismatch", Eos, numLabels: 4, scoreRows: 3);
        var e = Assert.Throws<ConfigException>(() => SequenceClassifier.FromPretrained(dir, export: true, Options));
        Assert.Equal("num_labels", e.Field);
        Assert.Contains("score.weight", e.Message);
        Assert.Contains("[3, 64]", e.Message);
    }

    [SkippableFact]
    public void Problem_type_selects_sigmoid_or_raw_scores_and_an_unknown_one_is_a_config_error()
    {
        var cases = Expected();
        using (var multi = SequenceClassifier.FromPretrained(MakeClassifier("multi", Eos, problemType: "multi_label_classification"), export: true, Options))
        {
            var r = multi.Classify(cases[0].Text);
            Golden.Close(cases[0].Want, r.Logits, 1e-4f, "multi-label logits");
            for (int i = 0; i < 3; i++) Assert.Equal(1 / (1 + Math.Exp(-r.Logits[i])), r.Probabilities[i], 5);
        }
        using (var reg = SequenceClassifier.FromPretrained(MakeClassifier("reg", Eos, numLabels: 1, scoreRows: 1), export: true, Options))
        {
            Assert.Equal("regression", reg.ProblemType);
            var r = reg.Classify(cases[1].Text);
            Assert.Equal(cases[1].Want[0], r.Probabilities[0], 4);
            Assert.Equal(r.Logits[0], r.Score);
        }
        var e = Assert.Throws<ConfigException>(() => SequenceClassifier.FromPretrained(MakeClassifier("bad", Eos, problemType: "ranking"), export: true, Options));
        Assert.Equal("problem_type", e.Field);
    }

    [SkippableFact]
    public void Classify_command_runs_a_gpt2_classifier_and_prints_json()
    {
        var dir = MakeClassifier("cli", Eos);
        var cases = Expected();
        var r = HubCli.Run(new Dictionary<string, string> { ["HUB_CACHE"] = Path.Combine(_tmp, "hub-cache"), ["HF_HUB_OFFLINE"] = "1" },
            ["classify", dir, "--text", cases[0].Text, "--text", cases[1].Text, "--json"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var results = JsonNode.Parse(r.Stdout)!["results"]!.AsArray();
        Assert.Equal(2, results.Count);
        for (int b = 0; b < 2; b++)
        {
            var want = cases[b].Want;
            int best = Array.IndexOf(want, want.Max());
            Assert.Equal($"col{Columns[best]}", (string?)results[b]!["label"]);
        }
    }
}
