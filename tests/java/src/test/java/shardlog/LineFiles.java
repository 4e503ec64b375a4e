package shardlog;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.sink.SinkConnector;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * Minimal file connectors for the Connect test: Kafka's own file connectors (connect-file) are not
 * served at 4.4 here, and 4.3's do not load in a 4.4 runtime. The source reads a file's lines,
 * keeping its position in Connect's offsets topic; the sink appends each record's value as a line.
 */
final class LineFiles {
  private LineFiles() {}

  static final ConfigDef CONFIG =
      new ConfigDef()
          .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "the file")
          .define("topic", ConfigDef.Type.STRING, "", ConfigDef.Importance.HIGH, "source topic");

  public static class Source extends SourceConnector {
    private Map<String, String> props;

    @Override
    public void start(Map<String, String> props) {
      this.props = props;
    }

    @Override
    public Class<? extends Task> taskClass() {
      return SourceLines.class;
    }

    @Override
    public List<Map<String, String>> taskConfigs(int max) {
      return List.of(props);
    }

    @Override
    public void stop() {}

    @Override
    public ConfigDef config() {
      return CONFIG;
    }

    @Override
    public String version() {
      return "1";
    }
  }

  public static class SourceLines extends SourceTask {
    private Path file;
    private String topic;
    private long next;

    @Override
    public void start(Map<String, String> props) {
      file = Path.of(props.get("file"));
      topic = props.get("topic");
      Map<String, Object> at = context.offsetStorageReader().offset(Map.of("file", file.toString()));
      next = at == null ? 0 : (Long) at.get("line");
    }

    @Override
    public List<SourceRecord> poll() throws InterruptedException {
      List<String> lines;
      try {
        lines = Files.readAllLines(file, StandardCharsets.UTF_8);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      List<SourceRecord> out = new ArrayList<>();
      while (next < lines.size() && out.size() < 100) {
        out.add(
            new SourceRecord(
                Map.of("file", file.toString()),
                Map.of("line", next + 1),
                topic,
                null,
                Schema.STRING_SCHEMA,
                lines.get((int) next)));
        next++;
      }
      if (out.isEmpty()) {
        Thread.sleep(100);
        return null;
      }
      return out;
    }

    @Override
    public void stop() {}

    @Override
    public String version() {
      return "1";
    }
  }

  public static class Sink extends SinkConnector {
    private Map<String, String> props;

    @Override
    public void start(Map<String, String> props) {
      this.props = props;
    }

    @Override
    public Class<? extends Task> taskClass() {
      return SinkLines.class;
    }

    @Override
    public List<Map<String, String>> taskConfigs(int max) {
      return List.of(props);
    }

    @Override
    public void stop() {}

    @Override
    public ConfigDef config() {
      return CONFIG;
    }

    @Override
    public String version() {
      return "1";
    }
  }

  public static class SinkLines extends SinkTask {
    private Path file;

    @Override
    public void start(Map<String, String> props) {
      file = Path.of(props.get("file"));
    }

    @Override
    public void put(Collection<SinkRecord> records) {
      StringBuilder b = new StringBuilder();
      for (SinkRecord r : records) {
        b.append(r.value()).append('\n');
      }
      try {
        Files.writeString(
            file, b, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }

    @Override
    public void stop() {}

    @Override
    public String version() {
      return "1";
    }
  }
}
