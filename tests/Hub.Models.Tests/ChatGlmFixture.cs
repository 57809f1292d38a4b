using Hub.IR;
using System.Text.Json;
using Hub.Converters;
using Hub.Models.ChatGlm;
using Hub.Tests;

namespace Hub.Models.Tests;

/// <summary>One golden case: ids [B,T], optional golden positions/mask, logits [B,T,V], greedy ids per row.</summary>
internal sealed record ChatGlmCase(string Kind, int[][] Ids, JsonElement Raw, float[][][] Logits, int[][] Greedy);

/// <summary>Loads a ChatGLM fixture folder (config, sharded torch checkpoint, golden.json) and exports its graph.</summary>
internal sealed class ChatGlmFixture : IDisposable
{
    public string Dir { get; }
    public ModelSource Source { get; }
    public ModelExport Export { get; }
    public JsonDocument Golden { get; }

    private ChatGlmFixture(string dir)
    {
        Dir = dir;
        var configPath = Path.Combine(dir, "config.json");
        Source = new ModelSource
        {
            Directory = dir,
            Config = ConfigReader.Load(configPath),
            ConfigPath = configPath,
            Weights = CheckpointLoader.OpenFolder(dir),
        };
        Export = ModelRegistry.Resolve(Source.Config, configPath).Build(Source, ExportSettings.Default);
        Golden = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "golden.json")));
    }

    /// <summary>The fixture under shared/fixtures (skips the test when shared/ is absent).</summary>
    public static ChatGlmFixture Open(string name) => new(SharedDir.Require($"fixtures/{name}"));

    public IEnumerable<ChatGlmCase> Cases()
    {
        foreach (var c in Golden.RootElement.GetProperty("cases").EnumerateArray())
        {
            var ids = c.GetProperty("input_ids").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
            var logits = c.GetProperty("logits").EnumerateArray()
                .Select(b => b.EnumerateArray().Select(t => t.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray()).ToArray();
            var g = c.GetProperty("greedy_ids");
            var greedy = g[0].ValueKind == JsonValueKind.Array
                ? g.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray()
                : new[] { g.EnumerateArray().Select(x => x.GetInt32()).ToArray() };
            yield return new ChatGlmCase(c.GetProperty("kind").GetString()!, ids, c, logits, greedy);
        }
    }

    public ChatGlmConfig Config => ChatGlmConfig.Parse(Source.Config, Source.ConfigPath);

    public void Dispose()
    {
        Source.Weights.Dispose();
        Golden.Dispose();
    }
}
