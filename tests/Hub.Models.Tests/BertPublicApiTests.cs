using System.CommandLine;
using System.Text.Json.Nodes;
using Hub.Cli.Commands;
using Hub.Tests;

namespace Hub.Models.Tests;

/// <summary>SequenceClassifier, TextEncoder and the classify/embed commands end to end (export → IR → runtime).</summary>
public sealed class BertPublicApiTests : IDisposable
{
    private readonly string _cache = SharedDir.TempDir("bert-cache");
    private ModelOptions Options => new() { ExportCacheDir = _cache, Threads = 2 };

    public void Dispose() => Directory.Delete(_cache, true);

    [SkippableFact]
    public void Classifier_labels_and_probabilities_match_golden_for_texts_and_pairs()
    {
        var dir = SharedDir.Require("fixtures/bert-tiny-cls");
        using var any = Model.FromPretrained(dir, export: true, Options);
        var classifier = Assert.IsType<SequenceClassifier>(any);
        Assert.Equal(["negative", "neutral", "positive"], classifier.Labels);
        var golden = BertGolden.Load(Path.Combine(dir, "golden.json"));
        var c = golden["cases"]![1]!;
        var results = classifier.Classify(["I did not like it.", "Is it raining?"], [null, "No, the sun is out today."]);
        for (int b = 0; b < 2; b++)
        {
            Assert.Equal((string?)c["label"]![b], results[b].Label);
            Assert.True(BertGolden.MaxAbsDiff(results[b].Probabilities, BertGolden.Flat(c["probs"]![b]!)) < 1e-4);
            Assert.True(BertGolden.MaxAbsDiff(results[b].Logits, BertGolden.Flat(c["logits"]![b]!)) < 1e-4);
            Assert.Equal(results[b].Probabilities.Max(), results[b].Score);
        }
        var single = classifier.Classify("This movie was surprisingly good!");
        Assert.True(BertGolden.MaxAbsDiff(single.Probabilities, BertGolden.Flat(golden["cases"]![0]!["probs"]!)) < 1e-4);
    }

    [SkippableFact]
    public void Encoder_embeddings_match_onnx_runtime_and_default_to_max_seq_length()
    {
        var dir = SharedDir.Require("models/sentence-transformers/all-MiniLM-L6-v2");
        using var encoder = TextEncoder.FromPretrained(dir, export: true, Options);
        Assert.Equal(384, encoder.Dimension);
        Assert.Equal(256, encoder.DefaultMaxLength);
        foreach (var c in BertGolden.Load(Path.Combine(dir, "golden.json"))["cases"]!.AsArray())
        {
            var texts = c!["texts"]!.AsArray().Select(t => (string)t!).ToList();
            var emb = encoder.Embed(texts, (int?)c["max_length"]);
            var want = BertGolden.Flat(c["sentence_embedding"]!);
            for (int b = 0; b < texts.Count; b++)
                Assert.True(TextEncoder.CosineSimilarity(emb[b], want.AsSpan(b * 384, 384)) >= 0.99999, $"{c["name"]}[{b}]");
        }
    }

    [SkippableFact]
    public void Empty_text_list_and_too_long_text_without_truncation_throw_typed_errors()
    {
        var dir = SharedDir.Require("fixtures/bert-tiny-cls");
        using var classifier = SequenceClassifier.FromPretrained(dir, export: true, Options);
        Assert.Throws<ArgumentException>(() => classifier.Classify(Array.Empty<string>()));
        var longText = string.Join(" ", Enumerable.Repeat("movie", 600));
        var e = Assert.Throws<ModelInputException>(() => classifier.Classify([longText], truncation: false));
        Assert.Contains("512", e.Message);
        Assert.Equal(3, classifier.Classify([longText]).Single().Probabilities.Length); // truncated to 512 by default
    }

    [SkippableFact]
    public void Missing_vocab_txt_throws_naming_it()
    {
        var dir = SharedDir.Require("fixtures/bert-tiny-cls");
        var copy = SharedDir.TempDir("bert-novocab");
        try
        {
            foreach (var f in Directory.GetFiles(dir))
                if (Path.GetFileName(f) != "vocab.txt") File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
            using var classifier = SequenceClassifier.FromPretrained(copy, export: true, Options);
            var e = Assert.Throws<ModelFileNotFoundException>(() => classifier.Classify("great movie"));
            Assert.EndsWith("vocab.txt", e.FilePath);
        }
        finally { Directory.Delete(copy, true); }
    }

    [SkippableFact]
    public void Num_labels_disagreeing_with_classifier_weight_fails_the_export_naming_field_and_tensor()
    {
        var dir = SharedDir.Require("fixtures/bert-tiny-cls");
        var copy = SharedDir.TempDir("bert-labels");
        try
        {
            foreach (var f in Directory.GetFiles(dir)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
            var cfg = ConfigReader.Load(Path.Combine(copy, "config.json"));
            cfg["id2label"] = JsonNode.Parse("""{"0": "no", "1": "yes"}""");
            cfg["label2id"] = JsonNode.Parse("""{"no": 0, "yes": 1}""");
            File.WriteAllText(Path.Combine(copy, "config.json"), cfg.ToJsonString());
            var e = Assert.Throws<ConfigException>(() => SequenceClassifier.FromPretrained(copy, export: true, Options));
            Assert.Equal("num_labels", e.Field);
            Assert.Contains("classifier.weight", e.Message);
        }
        finally { Directory.Delete(copy, true); }
    }

    // The CLI as users run it: a child process whose export cache is this test's folder.
    private (int Code, string Out) RunCli(string command, params string[] args)
    {
        var r = HubCli.Run(new Dictionary<string, string> { ["HUB_CACHE"] = _cache, ["HF_HUB_OFFLINE"] = "1" }, args);
        Assert.True(r.ExitCode == 0, $"hub {command}: {r.Stderr}");
        return (r.ExitCode, r.Stdout);
    }

    [SkippableFact]
    public void Classify_command_pairs_each_pair_with_the_text_before_it_and_prints_json()
    {
        var dir = SharedDir.Require("fixtures/bert-tiny-cls");
        var (code, output) = RunCli("classify", "classify", dir,
            "--text", "This movie was surprisingly good!", "--text", "Is it raining?", "--pair", "No, the sun is out today.", "--json");
        Assert.Equal(0, code);
        var results = JsonNode.Parse(output)!["results"]!.AsArray();
        Assert.Equal(2, results.Count);
        var golden = BertGolden.Load(Path.Combine(dir, "golden.json"));
        Assert.Equal((string?)golden["cases"]![0]!["label"]![0], (string?)results[0]!["label"]);
        Assert.Equal((string?)golden["cases"]![1]!["label"]![1], (string?)results[1]!["label"]);
        Assert.True(BertGolden.MaxAbsDiff(BertGolden.Flat(results[1]!["probs"]!), BertGolden.Flat(golden["cases"]![1]!["probs"]![1]!)) < 1e-4);
    }

    [SkippableFact]
    public void Embed_command_prints_unit_embeddings_as_json()
    {
        var dir = SharedDir.Require("models/sentence-transformers/all-MiniLM-L6-v2");
        var (code, output) = RunCli("embed", "embed", dir, "--text", "The quick brown fox jumps over the lazy dog.", "--text", "hello", "--json");
        Assert.Equal(0, code);
        var emb = JsonNode.Parse(output)!["embeddings"]!.AsArray();
        Assert.Equal(2, emb.Count);
        var first = BertGolden.Flat(emb[0]!);
        Assert.Equal(384, first.Length);
        var want = BertGolden.Flat(BertGolden.Load(Path.Combine(dir, "golden.json"))["cases"]![0]!["sentence_embedding"]!);
        Assert.True(TextEncoder.CosineSimilarity(first, want) >= 0.99999);
    }
}
