using Hub.Benchmarks.Encoders;

namespace Hub.Runtime.Tests;

/// <summary>The encoder bench refuses flags it does not know instead of running with defaults.</summary>
public class EncoderBenchArgsTests
{
    [Fact]
    public void Known_flags_parse_with_their_values()
    {
        var a = BenchArgs.Parse(["--rounds", "5", "--threads", "1", "--model", "/m", "--profile", "1"]);
        Assert.Equal(new BenchArgs(5, 1, "/m", true, false), a);
        Assert.Equal(new BenchArgs(7, 2, null, false, false), BenchArgs.Parse([]));
        Assert.True(BenchArgs.Parse(["--profile"]).Profile);
        Assert.True(BenchArgs.Parse(["--help"]).Help);
    }

    [Theory]
    [InlineData("--round", "7")]       // a typo of --rounds
    [InlineData("--threads")]          // no value
    [InlineData("--threads", "two")]
    [InlineData("--rounds", "0")]
    [InlineData("7")]                  // a stray value
    public void Unknown_flags_and_bad_values_are_usage_errors_naming_the_argument(params string[] args)
    {
        var e = Assert.Throws<ArgumentException>(() => BenchArgs.Parse(args));
        Assert.Contains(args[0], e.Message);
        Assert.Contains("--rounds N", BenchArgs.Usage);
    }
}
