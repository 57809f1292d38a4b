using Hub.Client;

namespace Hub.Client.Tests;

public class GlobAndOptionsTests
{
    [Theory]
    [InlineData("config.json", "*.json", true)]
    [InlineData("sub/dir/x.json", "*.json", true)]          // fnmatch: * crosses '/'
    [InlineData("model-00001-of-00002.safetensors", "model-*.safetensors", true)]
    [InlineData("onnx/model.onnx", "onnx/*", true)]
    [InlineData("onnx/model.onnx", "onnx/", true)]           // a folder pattern means everything under it
    [InlineData("config.JSON", "*.json", false)]             // case-sensitive as on POSIX
    [InlineData("a.bin", "?.bin", true)]
    [InlineData("ab.bin", "?.bin", false)]
    [InlineData("b.txt", "[!a]*", true)]
    [InlineData("a.txt", "[!a]*", false)]
    [InlineData("x1.txt", "x[0-9].txt", true)]
    [InlineData("x(1).txt", "x(1).txt", true)]               // regex metacharacters are literal
    [InlineData("x1.txt", "x(1).txt", false)]
    [InlineData("[.txt", "[.txt", true)]                     // unclosed bracket is literal
    public void Glob_follows_python_fnmatch(string path, string pattern, bool expected) =>
        Assert.Equal(expected, GlobFilter.IsMatch(path, pattern));

    [Fact]
    public void Filter_keeps_paths_matching_any_allow_and_no_ignore()
    {
        string[] paths = ["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "onnx/model.onnx"];
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"],
            GlobFilter.Filter(paths, ["*.json", "*.safetensors"], null).ToArray());
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"],
            GlobFilter.Filter(paths, null, ["*.bin", "onnx/"]).ToArray());
    }

    [Fact]
    public void Options_from_environment_follow_huggingface_hub_precedence()
    {
        var dir = Hub.Tests.SharedDir.TempDir("hubenv");
        try
        {
            File.WriteAllText(Path.Combine(dir, "token"), "hf_fromfile\n");
            var env = new Dictionary<string, string>
            {
                ["HF_HOME"] = dir,
                ["HF_ENDPOINT"] = "http://mirror.local:8080/",
                ["HF_HUB_OFFLINE"] = "yes",
                ["HF_HUB_ETAG_TIMEOUT"] = "3",
                ["HF_HUB_DOWNLOAD_TIMEOUT"] = "60",
                ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1",
            };
            var o = HubClientOptions.FromEnvironment(k => env.GetValueOrDefault(k));
            Assert.Equal("http://mirror.local:8080", o.Endpoint);
            Assert.Equal(Path.Combine(dir, "hub"), o.CacheDir);
            Assert.Equal("hf_fromfile", o.Token);
            Assert.True(o.Offline);
            Assert.True(o.DisableProgressBars);
            Assert.Equal(TimeSpan.FromSeconds(3), o.EtagTimeout);
            Assert.Equal(TimeSpan.FromSeconds(60), o.DownloadTimeout);

            env["HUGGING_FACE_HUB_TOKEN"] = "hf_legacy";
            Assert.Equal("hf_legacy", HubClientOptions.FromEnvironment(k => env.GetValueOrDefault(k)).Token);
            env["HF_TOKEN"] = " hf_primary ";
            env["HF_HUB_CACHE"] = Path.Combine(dir, "elsewhere");
            env["HF_HUB_OFFLINE"] = "0";
            var o2 = HubClientOptions.FromEnvironment(k => env.GetValueOrDefault(k));
            Assert.Equal("hf_primary", o2.Token);
            Assert.Equal(Path.Combine(dir, "elsewhere"), o2.CacheDir);
            Assert.False(o2.Offline);

            env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "true";
            Assert.Null(HubClientOptions.FromEnvironment(k => env.GetValueOrDefault(k)).Token);

            var bare = HubClientOptions.FromEnvironment(k => k == "HOME" ? dir : null);
            Assert.Equal(HubClientOptions.DefaultEndpoint, bare.Endpoint);
            Assert.EndsWith(Path.Combine(".cache", "huggingface", "hub"), bare.CacheDir);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("gpt2", true)]
    [InlineData("openai-community/gpt2", true)]
    [InlineData("THUDM/chatglm3-6b", true)]
    [InlineData("a/b/c", false)]
    [InlineData("../x", false)]
    [InlineData("/abs/path", false)]
    [InlineData("org--x/name", false)]
    [InlineData("", false)]
    public void LooksLikeRepoId_accepts_hub_ids_only(string s, bool expected) => Assert.Equal(expected, HubClient.LooksLikeRepoId(s));

    [Fact]
    public void LooksLikeRepoId_is_false_for_an_existing_local_folder()
    {
        var dir = Hub.Tests.SharedDir.TempDir("local");
        try
        {
            var cwdRelative = Path.GetRelativePath(Environment.CurrentDirectory, dir);
            Assert.False(HubClient.LooksLikeRepoId(dir));
            if (!cwdRelative.StartsWith("..", StringComparison.Ordinal)) Assert.False(HubClient.LooksLikeRepoId(cwdRelative));
        }
        finally { Directory.Delete(dir); }
    }
}
