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
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
        var c = golden["cases"]![0]!;
        var ids = Golden.Ints2(c["input_ids"])[0];
        var logits = lm.Logits(ids);
        for (int t = 0; t < ids.Length; t++)
            Golden.Close(Golden.Floats(c["logits"]![0]![t]), logits[t], 1e-4f, $"{fixture} pos {t}");
        var greedy = c["greedy_ids"]!.AsArray();
        var want = greedy[0] is System.Text.Json.Nodes.JsonArray ? Golden.Ints(greedy[0]) : Golden.Ints(greedy);
        Assert.Equal(want, lm.Generate(ids, new GenerationConfig { MaxNewTokens = want.Length, EosTokenId = [] }));
    }
}
