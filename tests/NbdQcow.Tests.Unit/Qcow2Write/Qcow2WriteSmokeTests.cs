using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;

namespace NbdQcow.Tests.Unit.Qcow2Write;

public sealed class Qcow2WriteSmokeTests
{
    [Fact]
    public async Task Writes_to_a_created_image_pass_qemu_check_and_compare()
    {
        using var dir = new TempDirectory();
        var image = dir.File("a.qcow2");
        var raw = dir.File("a.raw");
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = 16 << 20 });
        QemuImgTool.AssertClean(image);
        var reference = new byte[16 << 20];
        await using (var device = Qcow2Image.Open(image, new ImageOpenOptions(), HostFile.Open))
        {
            var random = new Random(1);
            for (int i = 0; i < 50; i++)
            {
                int length = random.Next(1, 200_000);
                long offset = random.NextInt64(0, reference.Length - length);
                var data = new byte[length];
                random.NextBytes(data);
                await device.WriteAsync(offset, data, fua: false);
                data.CopyTo(reference, offset);
            }
            var readBack = new byte[reference.Length];
            await device.ReadAsync(0, readBack);
            Assert.True(readBack.AsSpan().SequenceEqual(reference));
        }
        File.WriteAllBytes(raw, reference);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
    }
}
