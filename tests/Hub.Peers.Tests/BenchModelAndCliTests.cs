using Hub.Benchmarks.Peers;
using Hub.Cli;
using Hub.Cli.Commands;
using Hub.Converters.Formats;
using Hub.Tests;

namespace Hub.Peers.Tests;

/// <summary>Generated benchmark checkpoints and the CLI's GGUF conversion, checked through both engines.</summary>
public class BenchModelAndCliTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-benchmodel");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [Fact]
    public void Tiny_generated_gqa_model_runs_the_same_greedy_tokens_in_hub_and_llama_cpp()
    {
        // The bench-model writer at a tiny shape: GQA (4 heads, 2 kv heads), untied head, two safetensors shards.
        var dir = Path.Combine(_tmp, "tiny");
        var shape = new BenchModelCommand.Shape(Dim: 64, Layers: 2, Heads: 4, KvHeads: 2, Ffn: 96, Vocab: 600, Shards: 2);
        long n = BenchModelCommand.Write(dir, shape, seed: 7, DType.F32);
        Assert.Equal(600L * 64 * 2 + 2 * (64 * 64 * 2 + 2 * 32 * 64 + 3 * 64 * 96 + 2 * 64) + 64, n);
        Assert.True(File.Exists(Path.Combine(dir, "model.safetensors.index.json")));
        Assert.Equal(2, Directory.EnumerateFiles(dir, "model-*.safetensors").Count());

        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = Path.Combine(_tmp, "ir"), Threads = 1 });
        Assert.Equal(600, lm.VocabSize);
        Assert.NotEmpty(lm.Tokenizer!.Encode("the tea")); // the synthesized SentencePiece model loads in Hub

        var gguf = GgufConvert.Cached(lm.Directory, GgmlType.F32);
        var reader = GgufReader.Open(gguf);
        Assert.Contains(reader.Tensors, t => t.Name == "output.weight");
        Assert.Equal(new long[] { 64, 32 }, reader.Tensor("blk.1.attn_k.weight").Ne);

        int[] prompt = [1, 300, 42, 599, 17, 260];
        var hub = new int[6];
        lm.Reset();
        hub[0] = ArgMax(lm.Forward(prompt, 1, prompt.Length, default));
        for (int s = 1; s < hub.Length; s++) hub[s] = ArgMax(lm.Forward(hub.AsSpan(s - 1, 1), 1, 1, default));
        using var peer = LlamaCppPeer.Load(gguf, threads: 1, contextSize: 32, f32Cache: true);
        Assert.Equal(600, peer.VocabSize);
        Assert.Equal(hub, peer.Run(prompt, hub.Length - 1).Tokens);
    }

    [Fact]
    public void Same_seed_writes_identical_weights_and_another_seed_does_not()
    {
        var shape = new BenchModelCommand.Shape(32, 1, 2, 2, 64, 300, 1);
        BenchModelCommand.Write(Path.Combine(_tmp, "a"), shape, 1, DType.F16);
        BenchModelCommand.Write(Path.Combine(_tmp, "b"), shape, 1, DType.F16);
        BenchModelCommand.Write(Path.Combine(_tmp, "c"), shape, 2, DType.F16);
        var a = File.ReadAllBytes(Path.Combine(_tmp, "a", "model.safetensors"));
        Assert.Equal(a, File.ReadAllBytes(Path.Combine(_tmp, "b", "model.safetensors")));
        Assert.NotEqual(a, File.ReadAllBytes(Path.Combine(_tmp, "c", "model.safetensors")));
    }

    [Fact]
    public void Bench_model_replaces_only_a_folder_it_wrote_and_refuses_a_real_model_folder()
    {
        var shape = new BenchModelCommand.Shape(32, 1, 2, 2, 64, 300, 1);
        // A user's model folder (has config.json, no marker) must survive untouched.
        var user = Path.Combine(_tmp, "user-model");
        Directory.CreateDirectory(user);
        File.WriteAllText(Path.Combine(user, "config.json"), "{}");
        File.WriteAllText(Path.Combine(user, "model.safetensors"), "precious");
        var ex = Assert.Throws<HubException>(() => BenchModelCommand.Write(user, shape, 1, DType.F32));
        Assert.Contains(BenchModelCommand.Marker, ex.Message);
        Assert.Equal("precious", File.ReadAllText(Path.Combine(user, "model.safetensors")));
        // Its own output is replaced on a rerun.
        var own = Path.Combine(_tmp, "own");
        BenchModelCommand.Write(own, shape, 1, DType.F32);
        Assert.True(File.Exists(Path.Combine(own, BenchModelCommand.Marker)));
        BenchModelCommand.Write(own, shape, 2, DType.F32);
        Assert.True(File.Exists(Path.Combine(own, "config.json")));
    }

    [SkippableFact]
    public void Cli_convert_to_gguf_writes_q4_0_with_f16_fallback_for_rows_not_multiple_of_32()
    {
        var src = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        var ir = Path.Combine(_tmp, "ir260k");
        Assert.Equal(0, Program.BuildRoot().Parse(["convert", src, ir]).Invoke());
        var outPath = Path.Combine(_tmp, "s.gguf");
        var stdout = new StringWriter();
        var prev = Console.Out;
        Console.SetOut(stdout);
        int code;
        try { code = Program.BuildRoot().Parse(["convert", ir, outPath, "--to", "gguf", "--gguf-type", "q4_0"]).Invoke(); }
        finally { Console.SetOut(prev); }
        Assert.Equal(0, code);
        Assert.Contains("wrote 47 tensors (Q4_0", stdout.ToString());
        var r = GgufReader.Open(outPath);
        Assert.Equal(GgmlType.Q4_0, r.Tensor("blk.0.attn_q.weight").Type);
        Assert.Equal(2u, r.Metadata["general.file_type"]);
        // stories260K's hidden_dim 172 is not a multiple of 32: ffn_down's rows fall back to F16.
        Assert.Equal(GgmlType.F16, r.Tensor("blk.0.ffn_down.weight").Type);
        using var peer = LlamaCppPeer.Load(outPath, threads: 1, contextSize: 32);
        Assert.Equal(512, peer.VocabSize);
        Assert.Equal(4, peer.Run([1, 403, 407], 3).Tokens.Length);
        Assert.Equal(1, Program.BuildRoot().Parse(["convert", ir, outPath, "--to", "gguf", "--gguf-type", "q5_k"]).Invoke());
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}
