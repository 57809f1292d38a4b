using System.Text.Json.Nodes;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>The `hub` command as a user runs it (a child process).</summary>
public class CliTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-cli");
    private Dictionary<string, string> Env => new() { ["HUB_CACHE"] = _tmp, ["HF_HUB_OFFLINE"] = "1", ["HF_HUB_CACHE"] = Path.Combine(_tmp, "hf") };

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableFact]
    public void Convert_to_gguf_without_weight_format_reuses_the_cached_float32_export()
    {
        var src = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        var gen = HubCli.Run(Env, "generate", src, "--prompt-ids", "1,403", "--max-new-tokens", "2", "--weight-format", "f32");
        Assert.True(gen.ExitCode == 0, gen.Stderr);
        var cache = Path.Combine(_tmp, "ir");
        var exports = Directory.GetDirectories(cache);
        Assert.Single(exports);

        var gguf = Path.Combine(_tmp, "s.gguf");
        var conv = HubCli.Run(Env, "convert", src, gguf, "--gguf-type", "f16");
        Assert.True(conv.ExitCode == 0, conv.Stderr);
        Assert.Equal(exports, Directory.GetDirectories(cache)); // no second export
        Assert.Contains("reusing the cached F32 export", conv.Stderr);
        Assert.True(new FileInfo(gguf).Length > 0);

        // Asked for explicitly, another precision is exported (and cached) as before.
        var f16 = HubCli.Run(Env, "convert", src, Path.Combine(_tmp, "s2.gguf"), "--gguf-type", "f16", "--weight-format", "f16");
        Assert.True(f16.ExitCode == 0, f16.Stderr);
        Assert.Equal(2, Directory.GetDirectories(cache).Length);
    }

    [SkippableFact]
    public void Convert_then_generate_json_and_logits_on_gpt2_tiny()
    {
        var src = SharedDir.Require("fixtures/gpt2-tiny");
        var golden = Golden.Load(Path.Combine(src, "golden.json"));
        var outDir = Path.Combine(_tmp, "gpt2-ir");
        var conv = HubCli.Run(Env, "convert", src, outDir);
        Assert.True(conv.ExitCode == 0, conv.Stderr);
        Assert.True(File.Exists(Path.Combine(outDir, "model.ir.bin")));

        var case0 = golden["cases"]![0]!;
        var ids = string.Join(",", Golden.Ints2(case0["input_ids"])[0]);
        var gen = HubCli.Run(Env, "generate", outDir, "--prompt-ids", ids, "--max-new-tokens", "5", "--json");
        Assert.True(gen.ExitCode == 0, gen.Stderr);
        var doc = JsonNode.Parse(gen.Stdout)!;
        Assert.Equal(Golden.Ints2(case0["greedy_ids"])[0].Take(5), Golden.Ints(doc["ids"]));
        Assert.NotNull((string?)doc["text"]);

        var text = HubCli.Run(Env, "generate", outDir, "--prompt", (string)case0["text"]!, "--max-new-tokens", "5", "--json");
        Assert.True(text.ExitCode == 0, text.Stderr);
        Assert.Equal(Golden.Ints2(case0["greedy_ids"])[0].Take(5), Golden.Ints(JsonNode.Parse(text.Stdout)!["ids"]));

        var logits = HubCli.Run(Env, "logits", outDir, "--ids", ids, "--json");
        Assert.True(logits.ExitCode == 0, logits.Stderr);
        var rows = JsonNode.Parse(logits.Stdout)!["logits"]!.AsArray();
        Assert.Equal(6, rows.Count);
        Golden.Close(Golden.Floats(case0["logits_last"]![0]), Golden.Floats(rows[5]), 1e-4f, "cli logits");

        var info = HubCli.Run(Env, "info", outDir, "--verify");
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("gpt2", info.Stdout);
        Assert.Contains("checksum:      ok", info.Stdout);
    }

    [Fact]
    public void Bad_input_gives_one_line_and_nonzero_exit()
    {
        var missing = HubCli.Run(Env, "generate", Path.Combine(_tmp, "nope"), "--prompt-ids", "1,2");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Single(missing.Stderr.Trim().Split('\n'));

        var badIds = HubCli.Run(Env, "logits", _tmp, "--ids", "1,x");
        Assert.NotEqual(0, badIds.ExitCode);
        Assert.Contains("comma-separated", badIds.Stderr);
    }

    [SkippableFact]
    public void Out_of_vocabulary_ids_exit_nonzero_with_message()
    {
        var src = SharedDir.Require("fixtures/gpt2-tiny");
        var r = HubCli.Run(Env, "logits", src, "--ids", "1,99999");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("99999", r.Stderr);
    }
}
