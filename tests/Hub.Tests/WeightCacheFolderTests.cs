using Hub.IR;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>
/// The runtime's weight cache (<c>model_cache/</c> inside an IR folder, written at compile) is derived data: an IR
/// folder used as an export source keeps its fingerprint when one appears, and <see cref="Model.Save"/> does not copy it.
/// </summary>
public class WeightCacheFolderTests : IDisposable
{
    private readonly string _cache = SharedDir.TempDir("hub-wcache-folder");

    public void Dispose() { try { Directory.Delete(_cache, true); } catch (IOException) { } }

    [Fact]
    public void A_source_folder_keeps_its_export_key_when_a_weight_cache_is_written_into_it()
    {
        var src = Path.Combine(_cache, "src");
        Directory.CreateDirectory(src);
        File.WriteAllText(Path.Combine(src, "config.json"), "{}");
        File.WriteAllText(Path.Combine(src, "model.safetensors"), "weights");
        var key = Exporter.CacheKey(src, ModelOptions.Default);
        Directory.CreateDirectory(Path.Combine(src, IrFormat.CacheFolder));
        File.WriteAllText(Path.Combine(src, IrFormat.CacheFolder, "x4-0123456789abcdef01234567.bin"), "cache");
        Assert.Equal(key, Exporter.CacheKey(src, ModelOptions.Default));
        // any other new file still changes it
        Directory.CreateDirectory(Path.Combine(src, "other"));
        File.WriteAllText(Path.Combine(src, "other", "x4-0123456789abcdef01234567.bin"), "data");
        Assert.NotEqual(key, Exporter.CacheKey(src, ModelOptions.Default));
    }

    [SkippableFact]
    public void Save_leaves_the_weight_cache_behind()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        var saved = Path.Combine(_cache, "saved");
        var options = new ModelOptions { ExportCacheDir = _cache, Threads = 2 };
        using (var lm = CausalLM.FromPretrained(dir, export: true, options))
        {
            Directory.CreateDirectory(Path.Combine(lm.Directory, IrFormat.CacheFolder));
            File.WriteAllText(Path.Combine(lm.Directory, IrFormat.CacheFolder, "x4-0123456789abcdef01234567.bin"), "cache");
            lm.Save(saved);
        }
        Assert.True(File.Exists(Path.Combine(saved, IrFormat.JsonFile)));
        Assert.False(Directory.Exists(Path.Combine(saved, IrFormat.CacheFolder)));
    }
}
