using Hub.Generation;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>ChatGLM v1 and v2 through CausalLM (export, positions built by Hub, generation) against THUDM goldens.</summary>
public class ChatGlmPublicApiTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-glm");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableTheory]
    [InlineData("chatglm1-tiny")]
    [InlineData("chatglm2-tiny")]
    public void Logits_and_greedy_ids_match_golden(string fixture)
    {
        var dir = SharedDir.Require($"fixtures/{fixture}");
        var golden = Golden.Load(Path.Combine(dir, "golden.json"));
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { KvCachePrecision = Hub.Runtime.KvCachePrecision.F32, ExportCacheDir = _tmp });
        var c = golden["cases"]![0]!;
        var ids = Golden.Ints2(c["input_ids"])[0];
        var logits = lm.Logits(ids);
        for (int t = 0; t < ids.Length; t++)
            Golden.Close(Golden.Floats(c["logits"]![0]![t]), logits[t], 1e-4f, $"{fixture} pos {t}");
        var greedy = c["greedy_ids"]!.AsArray();
        var want = greedy[0] is System.Text.Json.Nodes.JsonArray ? Golden.Ints(greedy[0]) : Golden.Ints(greedy);
        Assert.Equal(want, lm.Generate(ids, new GenerationConfig { MaxNewTokens = want.Length, EosTokenId = [] }));
    }

    [SkippableFact]
    public void ChatGlm1_left_padded_batch_gives_every_row_the_greedy_ids_it_gets_alone()
    {
        // THUDM pads v1 batches on the left and masks the pads; each row must generate exactly what it generates alone
        // (its golden greedy ids, made by THUDM's code on the unpadded row).
        var dir = SharedDir.Require("fixtures/chatglm1-tiny");
        var golden = Golden.Load(Path.Combine(dir, "golden.json"));
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { KvCachePrecision = Hub.Runtime.KvCachePrecision.F32, ExportCacheDir = _tmp, MaxBatch = 4 });
        var cases = golden["cases"]!.AsArray().Select(c => (Ids: Golden.Ints2(c!["input_ids"])[0], Greedy: Golden.Ints(c!["greedy_ids"]))).ToArray();   // v1 cases are single rows
        Assert.True(cases.Select(c => c.Ids.Length).Distinct().Count() >= 2, "the cases must differ in length to need padding");
        var cfg = new GenerationConfig { MaxNewTokens = cases[0].Greedy.Length, EosTokenId = [] };
        var batch = Generator.Generate(lm, cases.Select(c => c.Ids).ToArray(), cfg);
        for (int p = 0; p < cases.Length; p++)
            Assert.Equal(cases[p].Greedy, batch.Sequences[p]);
    }

    [SkippableFact]
    public void ChatGlm1_rows_expanded_by_ReorderCache_keep_their_2d_positions()
    {
        // Beam search expands a prompt row into its beams with ReorderCache; every beam must then decode with the
        // prompt row's [gMASK]/<sop> layout (the expanded rows used to get stale positions).
        var dir = SharedDir.Require("fixtures/chatglm1-tiny");
        var golden = Golden.Load(Path.Combine(dir, "golden.json"));
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { KvCachePrecision = Hub.Runtime.KvCachePrecision.F32, ExportCacheDir = _tmp, MaxBatch = 4 });
        var ids = Golden.Ints2(golden["cases"]![1]!["input_ids"])[0];
        int v = lm.VocabSize;
        lm.Reset();
        lm.Forward(ids, 1, ids.Length, default);
        int[] next = [17, 17, 17];
        var alone = lm.Forward(next.AsSpan(0, 1), 1, 1, default).ToArray();
        lm.Reset();
        lm.Forward(ids, 1, ids.Length, default);
        lm.ReorderCache([0, 0, 0]);
        var beams = lm.Forward(next, 3, 1, default).ToArray();
        for (int b = 0; b < 3; b++)
            Golden.Close(alone, beams.AsSpan(b * v, v).ToArray(), 1e-5f, $"beam {b}");
        lm.Reset();
    }
}
