using Hub.Generation;
using Hub.Mirror;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>FromPretrained by repo id against Hub's own mirror server on loopback (no mocked HTTP).</summary>
public class HubMirrorLoadTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-mirror-load");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableFact]
    public async Task Repo_id_served_by_the_mirror_generates_like_the_local_folder_and_reloads_without_requests()
    {
        var fixture = SharedDir.Require("fixtures/gpt2-tiny");
        var root = Path.Combine(_tmp, "root", "hub-fixtures", "gpt2-tiny");
        Directory.CreateDirectory(root);
        foreach (var f in Directory.GetFiles(fixture)) File.Copy(f, Path.Combine(root, Path.GetFileName(f)));
        await using var server = await MirrorServer.StartAsync(new MirrorOptions { Root = Path.Combine(_tmp, "root") });

        var options = new ModelOptions
        {
            Endpoint = server.BaseAddress.ToString().TrimEnd('/'),
            HubCacheDir = Path.Combine(_tmp, "hf"),
            ExportCacheDir = Path.Combine(_tmp, "ir"),
        };
        int[] prompt = [15496, 11, 616, 3290, 318, 13779];
        var cfg = new GenerationConfig { MaxNewTokens = 12 };
        int[] remote;
        using (var lm = CausalLM.FromPretrained("hub-fixtures/gpt2-tiny", export: true, options)) remote = lm.Generate(prompt, cfg);
        int[] local;
        using (var lm = CausalLM.FromPretrained(fixture, export: true, new ModelOptions { ExportCacheDir = Path.Combine(_tmp, "ir-local") })) local = lm.Generate(prompt, cfg);
        Assert.Equal(local, remote);
        Assert.True(Directory.Exists(Path.Combine(_tmp, "hf", "models--hub-fixtures--gpt2-tiny", "blobs")));

        long before = server.RequestCount;
        using (var again = CausalLM.FromPretrained("hub-fixtures/gpt2-tiny", export: true, options))
            Assert.Equal(remote, again.Generate(prompt, cfg));
        Assert.Equal(before, server.RequestCount);
    }

    [SkippableFact]
    public async Task Stories260K_from_the_mirror_generates_llama2c_greedy_ids()
    {
        var models = SharedDir.Require("models");
        var golden = Golden.Load(Path.Combine(models, "karpathy/tinyllamas/stories260K/golden.json"));
        await using var server = await MirrorServer.StartAsync(new MirrorOptions { Root = models });
        using var lm = CausalLM.FromPretrained("karpathy/tinyllamas", export: true, new ModelOptions
        {
            Subfolder = "stories260K",
            Endpoint = server.BaseAddress.ToString().TrimEnd('/'),
            HubCacheDir = Path.Combine(_tmp, "hf"),
            ExportCacheDir = Path.Combine(_tmp, "ir"),
        });
        foreach (var c in golden["cases"]!.AsArray())
        {
            var promptIds = Golden.Ints(c!["prompt_ids"]);
            Assert.Equal(promptIds, lm.Tokenizer!.Encode((string)c["prompt"]!));
            // run.c stops (without printing) when it picks BOS; EOS does not stop it.
            var ids = lm.Generate(promptIds, new GenerationConfig { MaxNewTokens = 80, EosTokenId = [1] });
            if (ids.Length > 0 && ids[^1] == 1) ids = ids[..^1];
            Assert.Equal(Golden.Ints(c["greedy_ids"]), ids);
        }
    }
}
